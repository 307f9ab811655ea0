"""Helpers shared by Smelt's Python integration tests (fixtures live in
conftest.py; the test modules import what they need from here)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = REPO_ROOT / "tools"

# Threads for both engines, so that timings and summation orders are comparable
# and the tests fit the 2-core CI machines.
THREADS = 2

# Seconds one `smelt` child may take before the test fails. Generous: the
# largest call (GPT-2 at sequence 128) is a few seconds with good kernels, but
# kernels are still being written and the CI machine is shared.
SMELT_TIMEOUT_S = 600

# What a Rust panic prints; a refused input must produce an error message instead.
PANIC_MARKER = "panicked at"

# `smelt run` ends its stderr with "loaded in X ms, ran in Y ms on ...".
TIMING_LINE = re.compile(r"loaded in ([0-9.]+) ms, ran in ([0-9.]+) ms")

# Opset and IR version of the tiny models the tests build (onnxruntime 1.31
# loads IR <= 13; onnx.helper.make_model would write a newer one).
OPSET = 17
IR_VERSION = 8


def file_name_for(name: str) -> str:
    """The file stem smelt (and tools/ort_reference.py) give an output name."""
    return "".join("_" if c in "/\\:\0" else c for c in name)


# --------------------------------------------------------------------------
# Running smelt
# --------------------------------------------------------------------------


@dataclass
class SmeltRun:
    """What one successful `smelt run` produced."""

    # Output arrays keyed by output name as smelt's file stems spell it
    # (file_name_for(name); identical for the plain names the models use).
    outputs: dict[str, np.ndarray]
    stderr: str
    load_ms: float | None = None
    run_ms: float | None = None
    command: list[str] = field(default_factory=list)


class Smelt:
    """Runs the smelt binary as a child process, files under WORK_DIR."""

    def __init__(self, binary: Path, work_dir: Path):
        self.binary = binary
        self.work_dir = work_dir
        self._counter = 0

    def fresh_dir(self, stem: str) -> Path:
        """A new empty folder under the work dir."""
        self._counter += 1
        path = self.work_dir / f"{stem}-{self._counter}"
        path.mkdir(parents=True)
        return path

    def cli(self, *args, timeout: float = SMELT_TIMEOUT_S) -> subprocess.CompletedProcess:
        """`smelt ARGS...`; returns the finished process (text stdout/stderr)."""
        command = [str(self.binary), *map(str, args)]
        try:
            return subprocess.run(command, capture_output=True, text=True,
                                  timeout=timeout, cwd=REPO_ROOT)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"`{' '.join(command)}` did not finish in {timeout} s; "
                        f"stderr so far:\n{e.stderr or ''}", pytrace=False)

    def write_inputs(self, feeds: dict[str, np.ndarray]) -> dict[str, Path]:
        """Save each array as NAME.npy in a fresh folder; returns name -> path."""
        folder = self.fresh_dir("inputs")
        paths = {}
        for name, value in feeds.items():
            paths[name] = folder / f"{file_name_for(name)}.npy"
            np.save(paths[name], value, allow_pickle=False)
        return paths

    def run_raw(self, model: Path, inputs: dict[str, Path | str],
                output_dir: Path | None = None, threads: int = THREADS,
                extra: tuple = ()) -> subprocess.CompletedProcess:
        """`smelt run MODEL --input NAME=FILE ...` exactly as given, success or not."""
        output_dir = output_dir or self.fresh_dir("outputs")
        args = ["run", model]
        for name, path in inputs.items():
            args += ["--input", f"{name}={path}"]
        args += ["--output-dir", output_dir, "--threads", threads, *extra]
        return self.cli(*args)

    def run(self, model: Path, feeds: dict[str, np.ndarray | Path],
            threads: int = THREADS) -> SmeltRun:
        """Run MODEL on FEEDS (arrays, or paths of .npy files) and read back
        every .npy it wrote. Fails the test, quoting stderr, if smelt fails."""
        arrays = {k: v for k, v in feeds.items() if isinstance(v, np.ndarray)}
        paths = {k: Path(v) for k, v in feeds.items() if not isinstance(v, np.ndarray)}
        if arrays:
            paths.update(self.write_inputs(arrays))
        output_dir = self.fresh_dir("outputs")
        done = self.run_raw(model, paths, output_dir, threads)
        if done.returncode != 0:
            pytest.fail(f"smelt run failed (exit {done.returncode}) on {model.name}:\n"
                        f"{done.stderr.strip()}", pytrace=False)
        outputs = {p.stem: np.load(p, allow_pickle=False)
                   for p in sorted(output_dir.glob("*.npy"))}
        timing = TIMING_LINE.search(done.stderr)
        return SmeltRun(
            outputs=outputs,
            stderr=done.stderr,
            load_ms=float(timing.group(1)) if timing else None,
            run_ms=float(timing.group(2)) if timing else None,
            command=[str(a) for a in done.args],
        )


def without_paths(message: str) -> str:
    """MESSAGE with absolute paths replaced by PATH. pytest's tmp_path holds
    the test's name ("test_missing_input..."), and the inputs' files are named
    after the inputs: neither may satisfy a check on what a message says."""
    return re.sub(r"/[^\s:'\"]+", "PATH", message)


def assert_refused(done: subprocess.CompletedProcess, *must_mention: str) -> str:
    """A command that should fail cleanly: exit code != 0, no Rust panic, and
    an error message mentioning every string in MUST_MENTION (file names and
    paths anywhere; other words outside the paths the message quotes).
    Returns stderr."""
    stderr = done.stderr
    command = " ".join(str(a) for a in done.args)
    assert done.returncode != 0, f"`{command}` was accepted (exit 0); stderr:\n{stderr}"
    assert PANIC_MARKER not in stderr, f"`{command}` panicked instead of refusing:\n{stderr}"
    assert stderr.strip(), f"`{command}` failed (exit {done.returncode}) without a message"
    for text in must_mention:
        is_file = "/" in text or "." in text
        assert text in (stderr if is_file else without_paths(stderr)), (
            f"the error message does not mention {text!r}:\n{stderr}")
    return stderr


# --------------------------------------------------------------------------
# The onnxruntime reference
# --------------------------------------------------------------------------


class OrtReference:
    """onnxruntime in this process, one cached InferenceSession per model file."""

    def __init__(self):
        self._sessions: dict[tuple[Path, float], ort.InferenceSession] = {}

    def session(self, model: Path) -> ort.InferenceSession:
        key = (model.resolve(), model.stat().st_mtime)
        if key not in self._sessions:
            options = ort.SessionOptions()
            options.intra_op_num_threads = THREADS
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            self._sessions[key] = ort.InferenceSession(
                str(model), options, providers=["CPUExecutionProvider"])
        return self._sessions[key]

    def run(self, model: Path, feeds: dict[str, np.ndarray | Path]) -> dict[str, np.ndarray]:
        """Outputs keyed by output name, in the model's output order."""
        arrays = {name: value if isinstance(value, np.ndarray)
                  else np.load(value, allow_pickle=False)
                  for name, value in feeds.items()}
        session = self.session(model)
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, arrays)))


# --------------------------------------------------------------------------
# Comparing outputs
# --------------------------------------------------------------------------


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """max|got - want| / max|want|, in float64 (0 when both are all zeros)."""
    if want.size == 0:
        return 0.0
    got64 = got.astype(np.float64)
    want64 = want.astype(np.float64)
    scale = float(np.max(np.abs(want64)))
    worst = float(np.max(np.abs(got64 - want64)))
    if scale == 0.0:
        return 0.0 if worst == 0.0 else float("inf")
    return worst / scale


def compare_outputs(got: dict[str, np.ndarray], want: dict[str, np.ndarray],
                    tolerance: float) -> dict[str, float]:
    """Checks smelt's outputs against onnxruntime's: the same output names,
    dtypes and shapes, and max|Δ| / max|ref| <= TOLERANCE for each float output
    (exact equality for integer and bool outputs). Returns the ratio per output."""
    want_files = {file_name_for(name): name for name in want}
    assert sorted(got) == sorted(want_files), (
        f"smelt wrote outputs {sorted(got)}, the model's outputs are {sorted(want_files)}")
    ratios = {}
    for stem, name in want_files.items():
        g, w = got[stem], want[name]
        assert g.dtype == w.dtype, f"output {name!r}: dtype {g.dtype}, expected {w.dtype}"
        assert g.shape == w.shape, f"output {name!r}: shape {g.shape}, expected {w.shape}"
        if np.issubdtype(w.dtype, np.floating):
            assert np.array_equal(np.isfinite(g), np.isfinite(w)), (
                f"output {name!r}: non-finite values where onnxruntime has finite ones "
                f"(or the reverse)")
            finite = np.isfinite(w)
            ratios[name] = relative_error(g[finite], w[finite])
            assert ratios[name] <= tolerance, (
                f"output {name!r}: max|Δ|/max|ref| = {ratios[name]:.3e} > {tolerance:.0e}")
        else:
            mismatches = int(np.count_nonzero(g != w))
            assert mismatches == 0, f"output {name!r}: {mismatches} of {w.size} elements differ"
            ratios[name] = 0.0
    return ratios


# --------------------------------------------------------------------------
# Tiny models
# --------------------------------------------------------------------------


def make_model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
               outputs: list[onnx.ValueInfoProto], initializers: list | None = None,
               opset: int = OPSET, extra_opsets: dict[str, int] | None = None,
               name: str = "test") -> onnx.ModelProto:
    """A model of one graph, IR version 8, importing OPSET for the default
    domain (plus EXTRA_OPSETS: domain -> version)."""
    graph = onnx.helper.make_graph(nodes, name, inputs, outputs, initializers or [])
    opsets = [onnx.helper.make_opsetid("", opset)]
    opsets += [onnx.helper.make_opsetid(d, v) for d, v in (extra_opsets or {}).items()]
    return onnx.helper.make_model(graph, opset_imports=opsets, ir_version=IR_VERSION,
                                  producer_name="smelt tests/python")


def save_model(model: onnx.ModelProto, path: Path) -> Path:
    """Write MODEL to PATH (creating its folder) and return PATH."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path
