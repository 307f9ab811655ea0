"""ONNX's backend test suite through `smelt conformance`, on each backend.

CPU: every case in tests/onnx-backend/cpu-passing.txt (maintained with the
kernels) must still pass, and at least 95% of the cases that use only ops
Smelt supports must pass. The Markdown report (per-op pass counts, every
failure with its reason) is written to build/conformance-cpu.md.

GPU: every case in tests/onnx-backend/gpu-passing.txt must pass; report in
build/conformance-gpu.md (see test_conformance_gpu).
"""

from __future__ import annotations

import re

import pytest

from support import PANIC_MARKER, REPO_ROOT, THREADS

PASS_LIST = REPO_ROOT / "tests" / "onnx-backend" / "cpu-passing.txt"
REPORT = REPO_ROOT / "build" / "conformance-cpu.md"
MIN_PASS_RATE = 95.0

GPU_PASS_LIST = REPO_ROOT / "tests" / "onnx-backend" / "gpu-passing.txt"
GPU_REPORT = REPO_ROOT / "build" / "conformance-gpu.md"
# On lavapipe (a CPU Vulkan driver) nearly every case takes well under a second;
# the light/ model-zoo cases take 2-24 s each on 2 quiet cores (up to 100 s on
# busy ones), and VGG-19 (39 GFLOP) over 2 minutes: it is left out by
# --max-gflop (counted in the report), the other models stay. Two workers
# overlap one case's host work with another's device work; the whole suite took
# 39 s on 2 quiet cores and 2.3 to 3.6 minutes on 2 cores shared with other
# builds (load 9 to 13). The per-case timeout catches hangs, not slowness: the
# slowest case kept (ResNet-50 / DenseNet-121) takes at most a third of it.
GPU_JOBS = 2
GPU_MAX_GFLOP = 10
GPU_CASE_TIMEOUT_S = 300
GPU_CONFORMANCE_TIMEOUT_S = 900

# The whole suite (about 1,900 cases, including the small model-zoo models)
# on 2 cores.
CONFORMANCE_TIMEOUT_S = 1200

# "1999 cases: 1500 supported, 1480 passed (98.7% of supported), 499 unsupported"
SUMMARY = re.compile(r"(\d+) cases: (\d+) supported, (\d+) passed \(([0-9.]+)% of supported\)")


def run_conformance(smelt, cases_dir, device: str, pass_list, report, *extra,
                    timeout: float) -> tuple[float, list[str]]:
    """`smelt conformance` on DEVICE: every case in PASS_LIST must pass; writes
    REPORT. Returns the pass rate of supported cases and the FAIL lines."""
    if not pass_list.is_file():
        pytest.fail(
            f"{pass_list.relative_to(REPO_ROOT)} does not exist. Create it from the cases "
            f"that pass today with\n  smelt conformance build/onnx-cases --device {device} "
            f"--write-pass {pass_list.relative_to(REPO_ROOT)}\nthen review and commit it.",
            pytrace=False,
        )
    done = smelt.cli("conformance", cases_dir, "--device", device, "--expect-pass", pass_list,
                     "--report", report, *extra, timeout=timeout)
    output = done.stdout + done.stderr
    summary = SUMMARY.search(done.stdout)
    if summary:
        print(summary.group(0))
    print(f"report: {report}")
    assert PANIC_MARKER not in done.stderr, f"smelt conformance panicked:\n{done.stderr}"

    # Regressions first: they are what a change most likely broke.
    problems = [line for line in done.stdout.splitlines()
                if line.startswith(("REGRESSION", "MISSING"))]
    assert done.returncode == 0, (
        f"smelt conformance --device {device} exited {done.returncode}:\n"
        + "\n".join(problems[:50] or output.strip().splitlines()[-30:])
        + f"\n(full report: {report})")

    assert summary, f"no summary line in the output:\n{output[-3000:]}"
    failures = [line for line in done.stdout.splitlines() if line.startswith("FAIL ")]
    return float(summary.group(4)), failures


@pytest.mark.slow
def test_conformance_cpu(onnx_cases_dir, smelt):
    rate, failures = run_conformance(smelt, onnx_cases_dir, "cpu", PASS_LIST, REPORT,
                                     "--threads", THREADS, timeout=CONFORMANCE_TIMEOUT_S)
    assert rate >= MIN_PASS_RATE, (
        f"{rate}% of supported cases pass, want >= {MIN_PASS_RATE}%; failures:\n"
        + "\n".join(failures[:40]) + f"\n(full report: {REPORT})")


@pytest.mark.slow
def test_conformance_gpu(onnx_cases_dir, smelt, gpu_available):
    """The same suite on the GPU backend (lavapipe in CI): every case in
    tests/onnx-backend/gpu-passing.txt must pass; the report, with each failure's
    reason and the slowest cases, goes to build/conformance-gpu.md.

    No pass-rate floor: cases whose nodes have no GPU kernel run on the CPU and
    pass there; the list is the contract. Regenerate it (after GPU kernels land,
    on a machine whose only adapter is lavapipe, as in CI) with

      target/release/smelt conformance build/onnx-cases --device gpu \\
          --threads 2 --jobs 2 --max-gflop 10 --case-timeout 300 \\
          --write-pass tests/onnx-backend/gpu-passing.txt --report build/conformance-gpu.md

    and review the diff: a case that leaves the list is a regression to explain.
    """
    run_conformance(smelt, onnx_cases_dir, "gpu", GPU_PASS_LIST, GPU_REPORT,
                    "--threads", THREADS, "--jobs", GPU_JOBS, "--max-gflop", GPU_MAX_GFLOP,
                    "--case-timeout", GPU_CASE_TIMEOUT_S, timeout=GPU_CONFORMANCE_TIMEOUT_S)
