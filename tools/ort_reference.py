#!/usr/bin/env python3
"""Run a model through onnxruntime (CPU) as the reference for `smelt run`.

Usage:
  ort_reference.py MODEL --input NAME=FILE.npy [--input ...] --output-dir DIR
                   [--threads N] [--repeat R]

Same command-line shape as `smelt run`: each graph input comes from a .npy
file, and every graph output is written to DIR/OUTPUT_NAME.npy (characters
'/', '\\', ':' and NUL in output names become '_', as smelt does it), so a test
can run both tools on the same files and compare the folders.

Timings go to stderr. With --repeat R the model runs R more times after the
first run (which doubles as the warm-up and is not counted) and the median and
best of those R runs are printed too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def output_file_name(name: str) -> str:
    """Keep an ONNX tensor name usable as a file name (mirrors smelt)."""
    return "".join("_" if c in "/\\:\0" else c for c in name)


def parse_inputs(specs: list[str]) -> dict[str, np.ndarray]:
    feeds = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            raise SystemExit(f"error: --input expects NAME=FILE.npy, got {spec!r}")
        if name in feeds:
            raise SystemExit(f"error: input {name!r} given twice")
        feeds[name] = np.load(file, allow_pickle=False)
    return feeds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="the ONNX model file")
    parser.add_argument("--input", dest="inputs", action="append", default=[],
                        metavar="NAME=FILE.npy", help="one model input; repeat for each")
    parser.add_argument("--output-dir", type=Path, required=True, metavar="DIR",
                        help="folder for OUTPUT_NAME.npy files (created if missing)")
    parser.add_argument("--threads", type=int, default=0,
                        help="intra-op threads (default 0: onnxruntime's choice)")
    parser.add_argument("--repeat", type=int, default=0,
                        help="extra runs to time after the first (default 0)")
    args = parser.parse_args()

    feeds = parse_inputs(args.inputs)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL

    load_start = time.perf_counter()
    session = ort.InferenceSession(str(args.model), options, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - load_start) * 1e3

    expected = {i.name: i for i in session.get_inputs()}
    missing = sorted(set(expected) - set(feeds))
    unknown = sorted(set(feeds) - set(expected))
    if missing or unknown:
        raise SystemExit(f"error: inputs missing: {missing}, not in the model: {unknown}")

    run_start = time.perf_counter()
    outputs = session.run(None, feeds)
    first_ms = (time.perf_counter() - run_start) * 1e3

    args.output_dir.mkdir(parents=True, exist_ok=True)
    for meta, value in zip(session.get_outputs(), outputs):
        path = args.output_dir / f"{output_file_name(meta.name)}.npy"
        np.save(path, value, allow_pickle=False)
        print(f"{meta.name}: {value.dtype} {list(value.shape)} -> {path}", file=sys.stderr)
    print(f"loaded in {load_ms:.1f} ms, ran in {first_ms:.1f} ms on onnxruntime "
          f"{ort.__version__} CPU ({args.threads or 'default'} threads)", file=sys.stderr)

    if args.repeat > 0:
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            session.run(None, feeds)
            times.append((time.perf_counter() - start) * 1e3)
        print(f"{args.repeat} more runs: median {statistics.median(times):.1f} ms, "
              f"best {min(times):.1f} ms", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
