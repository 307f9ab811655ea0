#!/usr/bin/env bash
# Smelt's one test command: everything, from a fresh clone. CI (.ci/run) calls it.
#
#   scripts/test.sh [PYTEST_ARGS...]
#
# Stages, in order; the script stops at the first one that fails and says which:
#   setup         scripts/setup-test-env.sh: .venv, lavapipe, build/onnx-cases, build/models
#   cargo build   cargo build --release (the smelt binary the Python tests drive)
#   cargo test    cargo test --release --workspace (reuses the release artefacts)
#   apple check   scripts/check-apple.sh: smelt-cpu (Accelerate) and smelt-gpu (Metal)
#                 type-checked for aarch64-apple-darwin
#   pytest        the Python integration tests (tests/python) with the venv's python;
#                 extra arguments go to pytest (e.g. -k cli, -x).
# Each stage's time is printed as it ends, except pytest's: it runs last and
# prints its own time, so that on success the output ends with its summary line.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PY="$ROOT/.venv/bin/python"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export SMELT_BIN="${SMELT_BIN:-$TARGET_DIR/release/smelt}"

SCRIPT_START=$(date +%s)

# run_stage [--last] NAME COMMAND...: runs COMMAND; on failure names the stage
# and exits with its status. --last: print nothing after a success.
run_stage() {
    local last=0
    if [ "$1" = "--last" ]; then last=1; shift; fi
    local name="$1"; shift
    local start status
    start=$(date +%s)
    echo "==== test.sh: stage '$name': $*"
    # `if` keeps errexit from ending the script before we can report.
    if "$@"; then
        status=0
    else
        status=$?
    fi
    local now
    now=$(date +%s)
    if [ "$status" -ne 0 ]; then
        echo "==== test.sh: stage '$name' FAILED (exit $status) after $((now - start)) s;" \
             "$((now - SCRIPT_START)) s in all" >&2
        exit "$status"
    fi
    [ "$last" -eq 1 ] && return 0
    echo "==== test.sh: stage '$name' passed in $((now - start)) s" \
         "($((now - SCRIPT_START)) s so far)"
}

run_stage setup scripts/setup-test-env.sh
# Where a Vulkan driver is installed (lavapipe in CI), the GPU tests must find
# an adapter: without one they fail instead of skipping.
if [ -z "${SMELT_REQUIRE_GPU:-}" ] && compgen -G "/usr/share/vulkan/icd.d/*.json" >/dev/null; then
    export SMELT_REQUIRE_GPU=1
fi
# perf_analyzer (from the tritonclient wheel) loads libcudart from the venv.
CUDART_DIR="$(echo "$ROOT"/.venv/lib/python3*/site-packages/nvidia/cuda_runtime/lib)"
export LD_LIBRARY_PATH="$CUDART_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
run_stage 'cargo build' cargo build --release
run_stage 'cargo test' cargo test --release --workspace
run_stage 'apple check' scripts/check-apple.sh
# Last: pytest's own summary line closes the output.
run_stage --last pytest "$PY" -m pytest tests/python -q "$@"
