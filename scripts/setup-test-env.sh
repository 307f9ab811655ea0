#!/usr/bin/env bash
# Prepare everything Smelt's tests need on the Python side. Idempotent: each
# step is skipped when its result is already there and up to date.
#
#   1. .venv at the repository root (python3 -m venv), with requirements-test.txt
#      installed (skipped when the installed set matches the file).
#   2. lavapipe (Mesa's CPU Vulkan driver) when running as root on Debian or
#      Ubuntu and it is missing; only the GPU tests need it, so a failure is a
#      warning.
#   3. build/onnx-cases: ONNX's backend test cases (tools/write_onnx_cases.py),
#      regenerated when missing or when the script is newer.
#   4. build/models: the ResNet-50, BERT-base and GPT-2 test models
#      (tools/gen_models.py), regenerated likewise.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
PY="$VENV/bin/python"
REQUIREMENTS="$ROOT/requirements-test.txt"
# Records which requirements file content the venv was last installed from.
REQ_STAMP="$VENV/.requirements-test.sha256"

say() { echo "setup-test-env: $*"; }
warn() { echo "setup-test-env: warning: $*" >&2; }

# 1. Python environment -------------------------------------------------------
if [ ! -x "$PY" ]; then
    say "creating $VENV"
    python3 -m venv "$VENV"
fi
TRITON_REQUIREMENTS="$ROOT/requirements-triton.txt"
want_hash="$(cat "$REQUIREMENTS" "$TRITON_REQUIREMENTS" | sha256sum | cut -d' ' -f1)"
have_hash="$(cat "$REQ_STAMP" 2>/dev/null || true)"
if [ "$want_hash" != "$have_hash" ] \
    || ! "$PY" -c "import onnx, onnxruntime, numpy, pytest, tritonclient.grpc" 2>/dev/null; then
    say "installing $(basename "$REQUIREMENTS") and $(basename "$TRITON_REQUIREMENTS") into .venv"
    "$PY" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-deps -r "$TRITON_REQUIREMENTS"
    echo "$want_hash" > "$REQ_STAMP"
else
    say ".venv is up to date"
fi

# 2. lavapipe for the GPU tests -----------------------------------------------
have_lavapipe() {
    command -v vulkaninfo >/dev/null 2>&1 && return 0
    compgen -G "/usr/share/vulkan/icd.d/lvp_icd*.json" >/dev/null
}
if have_lavapipe; then
    say "lavapipe (Vulkan on the CPU) is present"
elif [ "$(id -u)" = 0 ] && [ -f /etc/debian_version ] && command -v apt-get >/dev/null; then
    say "installing mesa-vulkan-drivers (lavapipe) for the GPU tests"
    export DEBIAN_FRONTEND=noninteractive
    apt_opts=(-o DPkg::Lock::Timeout=120 -qq)
    if ! { apt-get "${apt_opts[@]}" update >/dev/null \
           && apt-get "${apt_opts[@]}" install -y mesa-vulkan-drivers >/dev/null; }; then
        warn "could not install mesa-vulkan-drivers; the GPU tests will not find an adapter"
    fi
else
    warn "lavapipe not found and not root on Debian/Ubuntu; the GPU tests need a Vulkan driver"
fi

# perf_analyzer (from the tritonclient wheel) needs libb64 from Debian.
have_libb64() { ldconfig -p 2>/dev/null | grep -q "libb64.so.0d"; }
if have_libb64; then
    say "libb64 (for perf_analyzer) is present"
elif [ "$(id -u)" = 0 ] && [ -f /etc/debian_version ] && command -v apt-get >/dev/null; then
    say "installing libb64-0d for perf_analyzer"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get -o DPkg::Lock::Timeout=120 -qq update >/dev/null \
           && apt-get -o DPkg::Lock::Timeout=120 -qq install -y libb64-0d >/dev/null; }; then
        warn "could not install libb64-0d; the perf_analyzer tests will fail"
    fi
else
    warn "libb64.so.0d not found and not root on Debian/Ubuntu; the perf_analyzer tests need it"
fi

# 3 and 4. Generated test data ---------------------------------------------------
# A target is stale when its stamp file is missing or older than its generator.
stale() {  # stale GENERATOR FILE...
    local generator="$1"; shift
    local file
    for file in "$@"; do
        if [ ! -f "$file" ] || [ "$generator" -nt "$file" ]; then
            return 0
        fi
    done
    return 1
}

CASES="$ROOT/build/onnx-cases"
# write_onnx_cases.py writes summary.json last, so it marks a complete run.
if stale tools/write_onnx_cases.py "$CASES/summary.json"; then
    say "writing ONNX backend test cases to build/onnx-cases"
    "$PY" tools/write_onnx_cases.py "$CASES"
else
    say "build/onnx-cases is up to date"
fi

MODELS="$ROOT/build/models"
# gen_models.py replaces each file only once it is complete.
if stale tools/gen_models.py "$MODELS/resnet50.onnx" "$MODELS/bert_base.onnx" \
        "$MODELS/gpt2_small.onnx"; then
    say "generating test models in build/models (about a minute)"
    "$PY" tools/gen_models.py "$MODELS"
else
    say "build/models is up to date"
fi
say "done"
