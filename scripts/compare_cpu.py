#!/usr/bin/env python3
"""Benchmark Smelt against onnxruntime and tract on the CPU, in one run.

Usage: scripts/compare_cpu.py [--threads 2] [--rounds 5] [--duration 10] [--warmup 2]
                              [--only ROW ...] [--quick] [--no-docs] [--smelt BIN]

Rows: ResNet-50 batch 1 and 8, BERT-base sequence 128 batch 1 and 8, GPT-2 small
sequence 128 batch 1 (build/models, made by scripts/setup-test-env.sh).

Engines, each measured in a child process of its own on the same model file and
the same input arrays (written once per row as .npy files):

  smelt        `smelt bench --json` with --input for every input, --threads T
  onnxruntime  intra_op_num_threads=T, inter_op_num_threads=1, ORT_ENABLE_ALL,
               sequential execution
  tract        the PyPI `tract` package (its default threading: it has no
               thread-count setting), input facts fixed to the row's shapes

Inputs follow `smelt bench`'s recipe: floats uniform in [-1, 1), token ids in
[0, rows of the embedding table they index), masks all ones, segment ids zeros.

Each measurement warms up for --warmup seconds, then runs for --duration seconds
and reports items/s (items = batch). Measurements go round-robin: every round
visits every row and every engine, the engine order rotating between rounds, so
a noisy neighbour slows all engines alike; the table shows the median over the
rounds and the ratio Smelt / peer (above 1: Smelt is faster). An engine that
cannot run a row is shown as "n/a (reason)" and not retried.

The table is printed and, unless --no-docs (or --quick, which measures too
briefly to publish), written to docs/BENCHMARKS.md between the markers
<!-- cpu:begin --> and <!-- cpu:end --> with the CPU model, core count, date and
this command; the rest of that file is left as it is.

--quick: 1 round, 0.2 s warm-up, 1 s per measurement; to check the script works.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "BENCHMARKS.md"
CPU_BEGIN, CPU_END = "<!-- cpu:begin -->", "<!-- cpu:end -->"
SERVER_BEGIN, SERVER_END = "<!-- server:begin -->", "<!-- server:end -->"
ENGINES = ("smelt", "onnxruntime", "tract")
# What smelt bench gives integer inputs when no embedding table tells the range.
DEFAULT_ID_RANGE = 16


@dataclass(frozen=True)
class Row:
    key: str          # for --only
    label: str
    model: str        # file stem in the models folder
    batch: int
    seq: int | None   # sequence length of the transformers
    unit: str


ROWS = (
    Row("resnet50-b1", "ResNet-50", "resnet50", 1, None, "img/s"),
    Row("resnet50-b8", "ResNet-50", "resnet50", 8, None, "img/s"),
    Row("bert-b1", "BERT-base seq 128", "bert_base", 1, 128, "seq/s"),
    Row("bert-b8", "BERT-base seq 128", "bert_base", 8, 128, "seq/s"),
    Row("gpt2-b1", "GPT-2 small seq 128", "gpt2_small", 1, 128, "passes/s"),
)


@dataclass
class Samples:
    items_per_s: list[float] = field(default_factory=list)
    error: str | None = None

    def cell(self) -> str:
        if self.error:
            return f"n/a ({self.error})"
        return f"{statistics.median(self.items_per_s):.2f}" if self.items_per_s else "–"

    def median(self) -> float | None:
        return statistics.median(self.items_per_s) if self.items_per_s and not self.error else None


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------


def file_name_for(name: str) -> str:
    """An ONNX tensor name as a file name ('/', '\\' and ':' become '_')."""
    return "".join("_" if c in "/\\:" else c for c in name)


def make_inputs(model_path: Path, batch: int, seq: int, out: Path, seed: int = 0) -> dict[str, Path]:
    """One .npy per graph input under OUT, by smelt bench's recipe."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(model_path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    tables = {i.name: list(i.dims) for i in model.graph.initializer}
    rows_of: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[0] in tables:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            dims = tables[node.input[0]]
            axis = axis + len(dims) if axis < 0 else axis
            if 0 <= axis < len(dims):
                name = node.input[1]
                rows_of[name] = min(rows_of.get(name, dims[axis]), dims[axis])
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        shape = []
        for position, dim in enumerate(vi.type.tensor_type.shape.dim):
            if dim.HasField("dim_value"):
                shape.append(dim.dim_value)
            elif position == 0 or "batch" in dim.dim_param.lower():
                shape.append(batch)
            else:
                shape.append(seq)
        elem = vi.type.tensor_type.elem_type
        np_type = helper.tensor_dtype_to_np_dtype(elem)
        lower = vi.name.lower()
        if elem in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE):
            value = rng.uniform(-1, 1, size=shape)
        elif elem == TensorProto.BOOL:
            value = np.ones(shape, dtype=bool)
        elif "mask" in lower:
            value = np.ones(shape)
        elif "token_type" in lower or "segment" in lower:
            value = np.zeros(shape)
        else:
            value = rng.integers(0, rows_of.get(vi.name, DEFAULT_ID_RANGE), size=shape)
        path = out / f"{file_name_for(vi.name)}.npy"
        np.save(path, np.ascontiguousarray(value.astype(np_type)), allow_pickle=False)
        files[vi.name] = path
    return files


# --------------------------------------------------------------------------
# Workers: one measurement in a child process, printing one JSON line
# --------------------------------------------------------------------------


def timed_loop(run, warmup: float, duration: float) -> dict:
    """Warm up, then run until DURATION seconds have passed."""
    run()
    start = time.perf_counter()
    while time.perf_counter() - start < warmup:
        run()
    runs = 0
    start = time.perf_counter()
    while True:
        run()
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= duration:
            return {"runs": runs, "seconds": elapsed}


def worker_onnxruntime(model: Path, feeds: dict, threads: int, warmup: float, duration: float) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return timed_loop(lambda: session.run(None, feeds), warmup, duration)


def worker_tract(model: Path, feeds: dict, threads: int, warmup: float, duration: float) -> dict:
    import tract

    inference = tract.onnx().load(str(model))
    names = [inference.input_name(i) for i in range(inference.input_count())]
    dtype_names = {"float32": "f32", "float16": "f16", "float64": "f64", "int64": "i64", "int32": "i32",
                   "bool": "bool", "uint8": "u8", "int8": "i8"}
    for i, name in enumerate(names):
        array = feeds[name]
        inference.set_input_fact(i, ",".join([*map(str, array.shape), dtype_names[str(array.dtype)]]))
    runnable = inference.into_model().into_runnable()
    ordered = [feeds[n] for n in names]
    return timed_loop(lambda: runnable.run(ordered), warmup, duration)


def worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="compare_cpu.py _worker")
    parser.add_argument("engine", choices=("onnxruntime", "tract"))
    parser.add_argument("model", type=Path)
    parser.add_argument("inputs", type=Path, help="JSON: input name -> .npy path")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--warmup", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    args = parser.parse_args(argv)
    import numpy as np

    feeds = {name: np.load(path) for name, path in json.loads(args.inputs.read_text()).items()}
    work = worker_onnxruntime if args.engine == "onnxruntime" else worker_tract
    result = work(args.model, feeds, args.threads, args.warmup, args.duration)
    print(json.dumps(result))
    return 0


# --------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------


def short_reason(stderr: str, code: int) -> str:
    """The last meaningful line of a failed child's stderr, shortened."""
    lines = [l.strip() for l in stderr.strip().splitlines() if l.strip()]
    meaningful = [l for l in lines if "XDG_RUNTIME_DIR" not in l]
    text = (meaningful or [f"exit {code}"])[-1]
    text = text.removeprefix("error: ")
    return text if len(text) <= 90 else text[:87] + "..."


def measure(engine: str, row: Row, model: Path, inputs: dict[str, Path], args, tmp: Path) -> float:
    """items/s of one measurement; raises RuntimeError with a reason on failure."""
    timeout = args.warmup + args.duration + 600
    if engine == "smelt":
        result = tmp / "smelt.json"
        command = [str(args.smelt), "bench", str(model), "--batch", str(row.batch), "--threads", str(args.threads),
                   "--warmup", str(args.warmup), "--duration", str(args.duration), "--json", str(result)]
        for name, path in inputs.items():
            command += ["--input", f"{name}={path}"]
    else:
        spec = tmp / "inputs.json"
        spec.write_text(json.dumps({k: str(v) for k, v in inputs.items()}))
        command = [sys.executable, str(Path(__file__).resolve()), "_worker", engine, str(model), str(spec),
                   "--threads", str(args.threads), "--warmup", str(args.warmup), "--duration", str(args.duration)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {timeout:.0f} s") from None
    if done.returncode != 0:
        raise RuntimeError(short_reason(done.stderr, done.returncode))
    if engine == "smelt":
        return json.loads(result.read_text())["items_per_s"]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    return measured["runs"] * row.batch / measured["seconds"]


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "–"


def per_round(smelt: Samples, peer: Samples) -> str:
    """The median of the round-by-round ratios and the rounds Smelt won.

    The two engines of one round run minutes apart at most, so a slow phase of
    the machine that spans a round slows both; the ratio of the medians can
    instead pair one engine's fast rounds with the other's slow ones. Only
    engines that measured every round are paired.
    """
    if smelt.error or peer.error or not smelt.items_per_s or len(smelt.items_per_s) != len(peer.items_per_s):
        return "–"
    pairs = list(zip(smelt.items_per_s, peer.items_per_s))
    ahead = sum(s > p for s, p in pairs)
    return f"{statistics.median(s / p for s, p in pairs):.2f} ({ahead} of {len(pairs)})"


def table(rows: list[Row], results: dict[str, dict[str, Samples]]) -> str:
    lines = [
        "| model | batch | unit | Smelt | onnxruntime | tract | Smelt / onnxruntime "
        "| per round (rounds Smelt won) | Smelt / tract |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        r = results[row.key]
        smelt = r["smelt"].median()
        lines.append(
            f"| {row.label} | {row.batch} | {row.unit} | {r['smelt'].cell()} | {r['onnxruntime'].cell()} | "
            f"{r['tract'].cell()} | {ratio(smelt, r['onnxruntime'].median())} | "
            f"{per_round(r['smelt'], r['onnxruntime'])} | {ratio(smelt, r['tract'].median())} |")
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> str:
    found = []
    for module in ("onnxruntime", "tract"):
        try:
            imported = __import__(module)
            version = imported.version() if module == "tract" else imported.__version__
            found.append(f"{module} {version}")
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            found.append(f"{module} not importable ({type(e).__name__})")
    return ", ".join(found)


def recorded_args(argv: list[str]) -> list[str]:
    """The arguments the docs record: all but `--smelt PATH`, a path on the
    machine that ran it (the default binary is the one a reader builds)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--smelt":
            skip = True
        elif not arg.startswith("--smelt="):
            kept.append(arg)
    return kept


def docs_section(text: str, args, command: str) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        CPU_BEGIN,
        "## CPU",
        "",
        f"Measured {now} on {cpu_model()}, {os.cpu_count()} cores, with {args.threads} threads per engine "
        f"({versions()}; tract at its default threading). Items per second, median of {args.rounds} "
        f"round-robin rounds of {args.duration:g} s each after {args.warmup:g} s of warm-up; "
        "ratios above 1 mean Smelt is faster. \"Per round\" is the median of each round's "
        "Smelt / onnxruntime ratio, with the rounds in which Smelt was faster.",
        "",
        text,
        "",
        "Made by:",
        "",
        "```sh",
        command,
        "```",
        CPU_END,
    ])


def write_docs(section: str, path: Path = DOCS) -> None:
    """Replace the CPU section of PATH, creating the file with both sections if absent."""
    if path.exists():
        text = path.read_text()
    else:
        text = "\n".join([
            "# Benchmarks",
            "",
            "Numbers measured on the project's machines. Each section is regenerated by its script;",
            "edit the scripts, not the numbers.",
            "",
            CPU_BEGIN, CPU_END, "",
            SERVER_BEGIN, SERVER_END, "",
        ])
    begin, end = text.find(CPU_BEGIN), text.find(CPU_END)
    if begin == -1 or end == -1 or end < begin:
        raise SystemExit(f"error: {path} lacks the markers {CPU_BEGIN} ... {CPU_END}; add them where the "
                         f"CPU section belongs")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text[:begin] + section + text[end + len(CPU_END):])


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        return worker_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--threads", type=int, default=2, help="threads per engine (default 2)")
    parser.add_argument("--rounds", type=int, default=5, help="round-robin rounds (default 5)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per measurement (default 2)")
    parser.add_argument("--only", action="append", choices=[r.key for r in ROWS], help="this row only (repeatable)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset of " + ", ".join(ENGINES))
    parser.add_argument("--quick", action="store_true", help="1 round, 0.2 s warm-up, 1 s each; docs untouched")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/BENCHMARKS.md")
    parser.add_argument("--models", type=Path, default=ROOT / "build" / "models", help="default build/models")
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    parser.add_argument("--smelt", type=Path, default=Path(os.environ.get("SMELT_BIN", target / "release" / "smelt")),
                        help="the smelt binary (default $SMELT_BIN, else $CARGO_TARGET_DIR or target, /release/smelt)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.warmup, args.duration = 1, 0.2, 1.0
    for flag, value in (("--threads", args.threads), ("--rounds", args.rounds)):
        if value < 1:
            parser.error(f"{flag} must be at least 1, got {value}")
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be > 0 and --warmup >= 0 seconds")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        parser.error(f"--engines: unknown {unknown or 'empty list'}; choose from {', '.join(ENGINES)}")
    if "smelt" in engines and not args.smelt.is_file():
        parser.error(f"no smelt binary at {args.smelt}: run `cargo build --release` or pass --smelt")
    rows = [r for r in ROWS if not args.only or r.key in args.only]
    for row in rows:
        if not (args.models / f"{row.model}.onnx").is_file():
            parser.error(f"{args.models / (row.model + '.onnx')} is missing: run scripts/setup-test-env.sh")

    results = {row.key: {e: Samples() for e in ENGINES} for row in rows}
    for row in rows:
        for engine in ENGINES:
            if engine not in engines:
                results[row.key][engine].error = "not measured (--engines)"
    with tempfile.TemporaryDirectory(prefix="smelt-compare-cpu-") as tmp_name:
        tmp = Path(tmp_name)
        inputs = {row.key: make_inputs(args.models / f"{row.model}.onnx", row.batch, row.seq or 128,
                                       tmp / row.key) for row in rows}
        for round_index in range(args.rounds):
            order = engines[round_index % len(engines):] + engines[:round_index % len(engines)]
            for row in rows:
                for engine in order:
                    samples = results[row.key][engine]
                    if samples.error:
                        continue
                    try:
                        value = measure(engine, row, args.models / f"{row.model}.onnx", inputs[row.key], args, tmp)
                    except RuntimeError as e:
                        samples.error = str(e)
                        print(f"round {round_index + 1} {row.key} {engine}: n/a ({e})", file=sys.stderr)
                        continue
                    samples.items_per_s.append(value)
                    print(f"round {round_index + 1} {row.key} {engine}: {value:.2f} {row.unit}", file=sys.stderr)

    text = table(rows, results)
    print(text)
    command = "scripts/compare_cpu.py " + " ".join(recorded_args(sys.argv[1:]))
    if args.quick or args.no_docs:
        print(f"(not written to {DOCS.relative_to(ROOT)}: {'--quick' if args.quick else '--no-docs'})",
              file=sys.stderr)
    else:
        write_docs(docs_section(text, args, command.strip()))
        print(f"wrote the CPU section of {DOCS.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
