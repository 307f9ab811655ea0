"""Fixtures for Smelt's Python integration tests.

The tests drive the real `smelt` binary as a child process and compare what it
writes with onnxruntime run in-process on the same inputs (helpers in
support.py).

Everything they need is made by the repository's own scripts, so a missing
piece is a test *failure* naming the command that makes it, never a skip:

  smelt binary      cargo build --release   (or point SMELT_BIN at a binary)
  build/models      scripts/setup-test-env.sh (tools/gen_models.py)
  build/onnx-cases  scripts/setup-test-env.sh (tools/write_onnx_cases.py)

`scripts/test.sh` runs all of these and then this suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO_ROOT, TOOLS_DIR, OrtReference, Smelt

MODEL_FILES = ("resnet50.onnx", "bert_base.onnx", "gpt2_small.onnx")


# --------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def smelt_bin() -> Path:
    """The `smelt` binary under test: $SMELT_BIN, else target/release/smelt."""
    configured = os.environ.get("SMELT_BIN")
    if configured:
        path, origin = Path(configured), "from SMELT_BIN"
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
        path, origin = target / "release" / "smelt", "the default location"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"no smelt binary at {path} ({origin}): build it with "
            f"`cargo build --release`, or set SMELT_BIN to a built binary",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """build/models with the three generated test models."""
    folder = REPO_ROOT / "build" / "models"
    missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
    if missing:
        pytest.fail(
            f"{folder} lacks {', '.join(missing)}: run scripts/setup-test-env.sh "
            f"(it generates them with tools/gen_models.py)",
            pytrace=False,
        )
    return folder


@pytest.fixture(scope="session")
def onnx_cases_dir() -> Path:
    """build/onnx-cases, complete (write_onnx_cases.py writes summary.json last)."""
    folder = REPO_ROOT / "build" / "onnx-cases"
    if not (folder / "summary.json").is_file():
        pytest.fail(
            f"{folder} is missing or incomplete (no summary.json): run "
            f"scripts/setup-test-env.sh (it writes them with tools/write_onnx_cases.py)",
            pytrace=False,
        )
    return folder


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory) -> Path:
    """A temporary folder shared by the whole test session (cached inputs)."""
    return tmp_path_factory.mktemp("session")


# --------------------------------------------------------------------------
# The two engines
# --------------------------------------------------------------------------


@pytest.fixture
def smelt(smelt_bin: Path, tmp_path: Path) -> Smelt:
    """Runs `smelt` (`.run` returns output arrays; `.run_raw` / `.cli` the
    finished process), writing its .npy files under this test's tmp_path."""
    return Smelt(smelt_bin, tmp_path)


@pytest.fixture(scope="session")
def gpu_available(smelt_bin: Path) -> None:
    """Skips the test when `smelt devices` lists no GPU adapter, saying why; with
    SMELT_REQUIRE_GPU=1 (scripts/test.sh sets it where a Vulkan driver is
    installed) fails it instead, so CI cannot pass by skipping the GPU."""
    done = subprocess.run([str(smelt_bin), "devices"], capture_output=True, text=True, timeout=120)
    if done.returncode == 0 and "gpu:0" in done.stdout:
        return
    reason = f"no GPU adapter (`smelt devices`: {done.stdout.strip() or done.stderr.strip()})"
    if os.environ.get("SMELT_REQUIRE_GPU") == "1":
        pytest.fail(f"SMELT_REQUIRE_GPU=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def ort_reference() -> OrtReference:
    """onnxruntime in-process (2 intra-op threads), sessions cached per model."""
    return OrtReference()


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def random_inputs(session_tmp: Path):
    """random_inputs(model, batch, seq=128, seed=0) -> {input name: .npy path}.

    Calls tools/random_inputs.py, so the tests feed what the benchmarks feed:
    N(0, 1) floats, token ids inside the embedding table, attention masks with
    padding at the end of odd rows. Cached for the session.
    """
    cache: dict[tuple, dict[str, Path]] = {}

    def make(model: Path, batch: int, seq: int = 128, seed: int = 0) -> dict[str, Path]:
        key = (model.resolve(), batch, seq, seed)
        if key not in cache:
            out = session_tmp / f"inputs-{model.stem}-b{batch}-s{seq}-seed{seed}"
            done = subprocess.run(
                [sys.executable, str(TOOLS_DIR / "random_inputs.py"), str(model),
                 "--batch", str(batch), "--seq", str(seq), "--out", str(out),
                 "--seed", str(seed)],
                capture_output=True, text=True, check=False)
            if done.returncode != 0:
                pytest.fail(f"tools/random_inputs.py failed on {model}:\n{done.stderr}",
                            pytrace=False)
            pairs = (line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
            cache[key] = {name: Path(path) for name, path in pairs}
        return cache[key]

    return make


# --------------------------------------------------------------------------
# Accuracy summary
# --------------------------------------------------------------------------

# Lines the model tests add, printed once in the terminal summary so the ratios
# are visible even when every test passes (pytest hides passing tests' output).
_ACCURACY_LINES: list[str] = []


@pytest.fixture(scope="session")
def accuracy_report() -> list[str]:
    """Append lines here to have them printed at the end of the run."""
    return _ACCURACY_LINES


def pytest_terminal_summary(terminalreporter):
    if _ACCURACY_LINES:
        terminalreporter.section("smelt vs onnxruntime: max|Δ| / max|ref| per output")
        for line in _ACCURACY_LINES:
            terminalreporter.write_line(line)
