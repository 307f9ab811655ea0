#!/usr/bin/env python3
"""Compare `smelt run` with onnxruntime on the test models: time and memory.

Usage: compare_run.py [--threads 2] [--repeat 5] [--models DIR] [--smelt BIN]
                      [--only resnet50|bert_base|gpt2_small ...] [--markdown FILE]

For ResNet-50, BERT-base and GPT-2 small (build/models, made by
scripts/setup-test-env.sh) at batch 1 (sequence 128 for the transformers),
both engines run as child processes on the same inputs
(tools/random_inputs.py), alternating smelt / onnxruntime REPEAT times so that
a noisy neighbour slows both alike:

  smelt        the `smelt run` binary (--smelt, $SMELT_BIN or target/release/smelt)
  onnxruntime  tools/ort_reference.py (onnxruntime CPU, same thread count)

Measured for each child: wall time from spawn to exit, and peak resident memory
(ru_maxrss from os.wait4, the kernel's high-water mark of that one process).
Both tools print "loaded in X ms, ran in Y ms" on stderr: the time to load and
prepare the model, and the time of the one inference (a first, cold run for
both), excluding process start-up and file I/O. The table shows the medians
and smelt / onnxruntime ratios (below 1: smelt is faster or smaller).

The onnxruntime child is a Python process: its wall time and memory include
starting the interpreter and importing numpy and onnxruntime (measured alone
and shown under the table).

Prints a Markdown table; writes it to FILE only with --markdown. Nothing is
written into the repository otherwise (inputs and outputs go to a temporary
folder).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"

# (model file stem, sequence length for the transformers). Batch is always 1.
MODELS = {"resnet50": 128, "bert_base": 128, "gpt2_small": 128}

TIMING = re.compile(r"loaded in ([0-9.]+) ms, ran in ([0-9.]+) ms")


@dataclass
class ChildRun:
    """One child process: wall time, peak RSS and the times it printed."""

    wall_ms: float
    max_rss_kib: int
    load_ms: float | None
    run_ms: float | None


@dataclass
class Samples:
    runs: list[ChildRun] = field(default_factory=list)
    error: str | None = None

    def median(self, attribute: str) -> float | None:
        values = [getattr(r, attribute) for r in self.runs]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None


def run_child(command: list[str], timeout_s: float) -> tuple[ChildRun, int, str]:
    """Run COMMAND; returns its measurements, exit code and stderr.

    os.wait4 reaps the child and hands back its own resource usage, so the peak
    RSS is that process's alone (RUSAGE_CHILDREN would report the largest of
    all children so far).
    """
    with tempfile.TemporaryFile(mode="w+") as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, cwd=ROOT)
        # A timer kills a child that runs too long; the blocking wait4 then returns.
        killer = threading.Timer(timeout_s, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall_ms = (time.perf_counter() - start) * 1e3
        # Tell the Popen object the child is reaped so that it does not wait again.
        proc.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        text = stderr.read()
    timing = TIMING.search(text)
    measured = ChildRun(
        wall_ms=wall_ms,
        max_rss_kib=usage.ru_maxrss,        # KiB on Linux
        load_ms=float(timing.group(1)) if timing else None,
        run_ms=float(timing.group(2)) if timing else None,
    )
    if wall_ms >= timeout_s * 1e3:
        text += f"\n(killed after {timeout_s:.0f} s)"
    return measured, proc.returncode, text


def make_inputs(model: Path, seq: int, out: Path) -> list[str]:
    """tools/random_inputs.py at batch 1; returns the NAME=PATH pairs."""
    done = subprocess.run(
        [sys.executable, str(TOOLS / "random_inputs.py"), str(model), "--batch", "1",
         "--seq", str(seq), "--out", str(out)],
        capture_output=True, text=True, check=True)
    return [line for line in done.stdout.splitlines() if "=" in line]


def max_relative_difference(smelt_dir: Path, ort_dir: Path) -> float | None:
    """max over outputs of max|smelt - ort| / max|ort|, None if files differ."""
    ort_files = sorted(ort_dir.glob("*.npy"))
    if not ort_files or sorted(p.name for p in smelt_dir.glob("*.npy")) != \
            [p.name for p in ort_files]:
        return None
    worst = 0.0
    for want_path in ort_files:
        want = np.load(want_path).astype(np.float64)
        got = np.load(smelt_dir / want_path.name).astype(np.float64)
        if got.shape != want.shape:
            return None
        scale = float(np.abs(want).max()) or 1.0
        worst = max(worst, float(np.abs(got - want).max()) / scale)
    return worst


def python_baseline(timeout_s: float) -> ChildRun:
    """A Python child that only imports numpy and onnxruntime."""
    measured, _, _ = run_child(
        [sys.executable, "-c", "import numpy, onnxruntime"], timeout_s)
    return measured


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "–"


def fmt(value: float | None, digits: int = 0) -> str:
    return f"{value:.{digits}f}" if value is not None else "–"


def mib(kib: float | None) -> float | None:
    return kib / 1024 if kib is not None else None


def markdown(results: dict[str, tuple[Samples, Samples, float | None]], args,
             baseline: ChildRun) -> str:
    lines = [
        f"`smelt run` vs onnxruntime {ort_version()} (tools/ort_reference.py), batch 1, "
        f"sequence 128, {args.threads} threads, median of {args.repeat} alternating runs.",
        "",
        "| model | wall ms smelt | wall ms ort | ratio | peak RSS MiB smelt | "
        "peak RSS MiB ort | ratio | load ms smelt | load ms ort | ratio | "
        "run ms smelt | run ms ort | ratio | max rel diff |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
        "---: | ---: | ---: | ---: |",
    ]
    failures = []
    for name, (smelt, ort, diff) in results.items():
        for who, samples in (("smelt", smelt), ("onnxruntime", ort)):
            if samples.error:
                failures.append(f"- {name}, {who}: {samples.error}")
        sw, ow = smelt.median("wall_ms"), ort.median("wall_ms")
        sm, om = mib(smelt.median("max_rss_kib")), mib(ort.median("max_rss_kib"))
        sl, ol = smelt.median("load_ms"), ort.median("load_ms")
        sr, orr = smelt.median("run_ms"), ort.median("run_ms")
        lines.append(
            f"| {name} | {fmt(sw)} | {fmt(ow)} | {ratio(sw, ow)} | {fmt(sm)} | {fmt(om)} | "
            f"{ratio(sm, om)} | {fmt(sl, 1)} | {fmt(ol, 1)} | {ratio(sl, ol)} | "
            f"{fmt(sr, 1)} | {fmt(orr, 1)} | {ratio(sr, orr)} | "
            f"{f'{diff:.1e}' if diff is not None else '–'} |")
    if failures:
        lines += ["", "Failed runs (no numbers for them):", *failures]
    lines += [
        "",
        f"Ratios are smelt / onnxruntime. The onnxruntime child includes Python start-up: "
        f"`python -c 'import numpy, onnxruntime'` alone takes {baseline.wall_ms:.0f} ms "
        f"and {baseline.max_rss_kib / 1024:.0f} MiB. Load and run times are what each "
        f"tool prints (model preparation; one cold inference).",
        "",
    ]
    return "\n".join(lines)


def ort_version() -> str:
    import onnxruntime
    return onnxruntime.__version__


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="threads for both (default 2)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="runs of each engine per model (default 5)")
    parser.add_argument("--models", type=Path, default=ROOT / "build" / "models",
                        help="folder with the generated models (default build/models)")
    parser.add_argument("--smelt", type=Path,
                        default=Path(os.environ.get("SMELT_BIN", ROOT / "target/release/smelt")),
                        help="the smelt binary (default $SMELT_BIN or target/release/smelt)")
    parser.add_argument("--only", action="append", choices=sorted(MODELS),
                        help="measure only this model (repeatable)")
    parser.add_argument("--timeout", type=float, default=600,
                        help="seconds one child may run (default 600)")
    parser.add_argument("--markdown", type=Path, metavar="FILE",
                        help="also write the table to FILE")
    args = parser.parse_args()

    if not args.smelt.is_file():
        parser.error(f"no smelt binary at {args.smelt}: run `cargo build --release`")
    names = args.only or list(MODELS)
    for name in names:
        if not (args.models / f"{name}.onnx").is_file():
            parser.error(f"{args.models / (name + '.onnx')} is missing: "
                         f"run scripts/setup-test-env.sh")

    baseline = python_baseline(args.timeout)
    results = {}
    with tempfile.TemporaryDirectory(prefix="smelt-compare-") as tmp:
        tmp_dir = Path(tmp)
        for name in names:
            model = args.models / f"{name}.onnx"
            pairs = make_inputs(model, MODELS[name], tmp_dir / f"{name}-inputs")
            input_args = [a for pair in pairs for a in ("--input", pair)]
            engines = {
                "smelt": lambda out: [str(args.smelt), "run", str(model), *input_args,
                                      "--output-dir", str(out), "--threads", str(args.threads)],
                "onnxruntime": lambda out: [sys.executable, str(TOOLS / "ort_reference.py"),
                                            str(model), *input_args, "--output-dir", str(out),
                                            "--threads", str(args.threads)],
            }
            samples = {engine: Samples() for engine in engines}
            for repeat in range(args.repeat):
                for engine, command in engines.items():
                    if samples[engine].error:
                        continue
                    out = tmp_dir / f"{name}-{engine}-out"
                    measured, code, stderr = run_child(command(out), args.timeout)
                    if code != 0:
                        last = stderr.strip().splitlines()[-1:] or [f"exit {code}"]
                        samples[engine].error = last[0][:200]
                        print(f"{name}: {engine} failed (exit {code}):\n{stderr.strip()}",
                              file=sys.stderr)
                        continue
                    samples[engine].runs.append(measured)
                    print(f"{name} #{repeat + 1} {engine:<11} wall {measured.wall_ms:7.0f} ms  "
                          f"load {fmt(measured.load_ms, 1):>7} ms  run {fmt(measured.run_ms, 1):>7} ms  "
                          f"peak RSS {measured.max_rss_kib / 1024:6.0f} MiB", file=sys.stderr)
            diff = None
            if not samples["smelt"].error and not samples["onnxruntime"].error:
                diff = max_relative_difference(tmp_dir / f"{name}-smelt-out",
                                               tmp_dir / f"{name}-onnxruntime-out")
            results[name] = (samples["smelt"], samples["onnxruntime"], diff)

    table = markdown(results, args, baseline)
    print(table)
    if args.markdown:
        args.markdown.write_text(table)
        print(f"wrote {args.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
