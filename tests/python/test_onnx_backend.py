"""ONNX's backend test suite through `smelt conformance`.

Every case in tests/onnx-backend/cpu-passing.txt (maintained with the
kernels) must still pass, and at least 95% of the cases that use only ops
Smelt supports must pass. The Markdown report (per-op pass counts, every
failure with its reason) is written to build/conformance-cpu.md.
"""

from __future__ import annotations

import re

import pytest

from support import PANIC_MARKER, REPO_ROOT, THREADS

PASS_LIST = REPO_ROOT / "tests" / "onnx-backend" / "cpu-passing.txt"
REPORT = REPO_ROOT / "build" / "conformance-cpu.md"
MIN_PASS_RATE = 95.0

# The whole suite (about 1,900 cases, including the small model-zoo models)
# on 2 cores.
CONFORMANCE_TIMEOUT_S = 1200

# "1999 cases: 1500 supported, 1480 passed (98.7% of supported), 499 unsupported"
SUMMARY = re.compile(r"(\d+) cases: (\d+) supported, (\d+) passed \(([0-9.]+)% of supported\)")


@pytest.mark.slow
def test_conformance_cpu(onnx_cases_dir, smelt):
    if not PASS_LIST.is_file():
        pytest.fail(
            f"{PASS_LIST.relative_to(REPO_ROOT)} does not exist. Create it from the cases "
            f"that pass today with\n  smelt conformance build/onnx-cases "
            f"--write-pass tests/onnx-backend/cpu-passing.txt\nthen review and commit it.",
            pytrace=False,
        )
    done = smelt.cli("conformance", onnx_cases_dir, "--expect-pass", PASS_LIST,
                     "--report", REPORT, "--threads", THREADS,
                     timeout=CONFORMANCE_TIMEOUT_S)
    output = done.stdout + done.stderr
    summary = SUMMARY.search(done.stdout)
    if summary:
        print(summary.group(0))
    print(f"report: {REPORT}")
    assert PANIC_MARKER not in done.stderr, f"smelt conformance panicked:\n{done.stderr}"

    # Regressions first: they are what a change most likely broke.
    problems = [line for line in done.stdout.splitlines()
                if line.startswith(("REGRESSION", "MISSING"))]
    assert done.returncode == 0, (
        f"smelt conformance exited {done.returncode}:\n"
        + "\n".join(problems[:50] or output.strip().splitlines()[-30:])
        + f"\n(full report: {REPORT})")

    assert summary, f"no summary line in the output:\n{output[-3000:]}"
    rate = float(summary.group(4))
    failures = [line for line in done.stdout.splitlines() if line.startswith("FAIL ")]
    assert rate >= MIN_PASS_RATE, (
        f"{rate}% of supported cases pass, want >= {MIN_PASS_RATE}%; failures:\n"
        + "\n".join(failures[:40]) + f"\n(full report: {REPORT})")
