#!/usr/bin/env python3
"""Write ONNX's backend test cases to disk for Smelt's conformance tests.

Usage: write_onnx_cases.py OUTDIR

Every case lands in the classic layout that ONNX's own data folders use:

    OUTDIR/<suite>/<case>/model.onnx
    OUTDIR/<suite>/<case>/test_data_set_N/input_K.pb    (K-th bound graph input)
    OUTDIR/<suite>/<case>/test_data_set_N/output_K.pb   (K-th graph output)
    OUTDIR/<suite>/<case>/meta.json

Inputs bind by position: input_K.pb feeds the K-th graph input that is not an
initializer (tensor names inside the .pb files may be empty or differ).

Suites:
  node    built in memory by onnx.backend.test.loader.load_node_model_tests()
          (onnx 1.23.2 ships no data/node folder), written here.
  light   the small ("light") model zoo files shipped under data/light, turned
          into classic cases the way ONNX's runner does it: the input is
          arange(n)/n in the input's shape, the expected output the shipped
          light_<model>_output_K.pb. Their tolerances come from data/real, whose
          entries only point at these files, so there is no separate "real" suite.
  others  every other shipped folder already in the classic layout
          (pytorch-converted, pytorch-operator, simple, ...), copied as is.

meta.json holds the comparison tolerances ONNX's backend runner applies to the
case (numpy.testing.assert_allclose(actual, expected, rtol, atol)): each
TestCase carries them; they are rtol=1e-3, atol=1e-7 everywhere except where
the case says otherwise (data.json in a shipped case; data/real's densenet121
uses rtol=2e-3). For reference, onnxruntime's own run of these cases loosens
atol to 1e-5 (1e-4 for test_dft and test_dft_axis); those numbers are not
applied here. meta.json also lists the op types the model uses (subgraphs
included), its opset imports, IR version and input/output names.

The output is deterministic: ONNX seeds numpy before building each node case,
files are written in sorted order and JSON with sorted keys.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx.backend.test.loader as onnx_loader
from onnx import numpy_helper

# ONNX's backend runner's defaults (onnx.backend.test.loader / case.node).
DEFAULT_RTOL = 1e-3
DEFAULT_ATOL = 1e-7

SHIPPED_DATA_DIR = Path(onnx_loader.DATA_DIR)


# --------------------------------------------------------------------------
# Describing a model for meta.json
# --------------------------------------------------------------------------


def qualified_op(node: onnx.NodeProto) -> str:
    """Op type, prefixed by its domain unless it is the default ONNX domain."""
    if node.domain in ("", "ai.onnx"):
        return node.op_type
    return f"{node.domain}.{node.op_type}"


def collect_op_types(graph: onnx.GraphProto, found: set[str]) -> None:
    """Add every op type of `graph` and of its subgraphs (If/Loop/Scan bodies)."""
    for node in graph.node:
        found.add(qualified_op(node))
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                collect_op_types(attr.g, found)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    collect_op_types(sub, found)


def bound_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that data files feed: those that are not initializers.

    Models of IR version < 4 list their initializers among the graph inputs too.
    """
    initializers = {init.name for init in model.graph.initializer}
    return [vi for vi in model.graph.input if vi.name not in initializers]


def describe(model: onnx.ModelProto, suite: str, case: str, rtol: float,
             atol: float, data_sets: int, source: str) -> dict:
    """The meta.json content for one case."""
    ops: set[str] = set()
    collect_op_types(model.graph, ops)
    meta = {
        "suite": suite,
        "case": case,
        "rtol": rtol,
        "atol": atol,
        "op_types": sorted(ops),
        "opset_imports": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "ir_version": model.ir_version,
        "inputs": [vi.name for vi in bound_inputs(model)],
        "outputs": [vi.name for vi in model.graph.output],
        "data_sets": data_sets,
        "source": source,
    }
    if model.functions:
        # Calls to these appear in op_types as "<domain>.<name>"; their bodies
        # are in the model file.
        meta["local_functions"] = sorted(f"{f.domain}.{f.name}" for f in model.functions)
    return meta


def write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")


# --------------------------------------------------------------------------
# Serialising values the way ONNX's generate-data tool does
# --------------------------------------------------------------------------


def value_to_proto_bytes(value, value_info: onnx.ValueInfoProto) -> bytes:
    """Serialise one input or output value according to its declared type."""
    kind = value_info.type.WhichOneof("value")
    name = value_info.name
    if kind == "map_type":
        return numpy_helper.from_dict(value, name).SerializeToString()
    if kind == "sequence_type":
        return numpy_helper.from_list(value, name).SerializeToString()
    if kind == "optional_type":
        return numpy_helper.from_optional(value, name).SerializeToString()
    # Tensors. Some cases (float8, int4, bfloat16, ...) already hold TensorProtos.
    if isinstance(value, onnx.TensorProto):
        return value.SerializeToString()
    return numpy_helper.from_array(np.asarray(value), name).SerializeToString()


def write_node_case(case, suite_dir: Path) -> None:
    """Write one in-memory TestCase (model + data sets) plus its meta.json."""
    model = case.model
    case_dir = suite_dir / case.name
    case_dir.mkdir(parents=True)
    (case_dir / "model.onnx").write_bytes(model.SerializeToString())
    graph_inputs = list(model.graph.input)
    graph_outputs = list(model.graph.output)
    for n, (inputs, outputs) in enumerate(case.data_sets):
        set_dir = case_dir / f"test_data_set_{n}"
        set_dir.mkdir()
        for k, value in enumerate(inputs):
            (set_dir / f"input_{k}.pb").write_bytes(
                value_to_proto_bytes(value, graph_inputs[k]))
        for k, value in enumerate(outputs):
            (set_dir / f"output_{k}.pb").write_bytes(
                value_to_proto_bytes(value, graph_outputs[k]))
    source = f"onnx {onnx.__version__} load_node_model_tests()"
    write_json(case_dir / "meta.json",
               describe(model, "node", case.name, case.rtol, case.atol,
                        len(case.data_sets), source))


# --------------------------------------------------------------------------
# Suites
# --------------------------------------------------------------------------


def load_node_cases() -> list:
    """Build the node cases in memory, quietly (some cases overflow on purpose)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = onnx_loader.load_node_model_tests()
    return sorted(cases, key=lambda c: c.name)


def write_node_suite(out_dir: Path) -> int:
    suite_dir = out_dir / "node"
    cases = load_node_cases()
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise SystemExit("error: duplicate node case names from onnx's loader")
    for case in cases:
        write_node_case(case, suite_dir)
    return len(cases)


def copy_classic_suite(src_dir: Path, out_dir: Path) -> int:
    """Copy a shipped suite that already has the classic layout, adding meta.json."""
    suite = src_dir.name
    count = 0
    for case_src in sorted(p for p in src_dir.iterdir() if p.is_dir()):
        if not (case_src / "model.onnx").exists():
            continue
        case_dir = out_dir / suite / case_src.name
        shutil.copytree(case_src, case_dir)
        rtol, atol = DEFAULT_RTOL, DEFAULT_ATOL
        data_json = case_src / "data.json"
        if data_json.exists():
            data = json.loads(data_json.read_text())
            rtol = data.get("rtol", rtol)
            atol = data.get("atol", atol)
        model = onnx.load(str(case_dir / "model.onnx"), load_external_data=False)
        data_sets = len(list(case_dir.glob("test_data_set_*")))
        source = f"onnx {onnx.__version__} onnx/backend/test/data/{suite}"
        write_json(case_dir / "meta.json",
                   describe(model, suite, case_src.name, rtol, atol, data_sets, source))
        count += 1
    return count


def light_tolerances() -> dict[str, tuple[str, float, float]]:
    """data/real entries keyed by the light model file they point at.

    Returns {file name: (case name, rtol, atol)}.
    """
    result = {}
    real_dir = SHIPPED_DATA_DIR / "real"
    if not real_dir.is_dir():
        return result
    for entry in sorted(real_dir.iterdir()):
        data_json = entry / "data.json"
        if not data_json.exists():
            continue
        data = json.loads(data_json.read_text())
        url = data.get("url") or ""
        result[Path(url).name] = (entry.name, data.get("rtol", DEFAULT_RTOL),
                                  data.get("atol", DEFAULT_ATOL))
    return result


def dummy_input(value_info: onnx.ValueInfoProto) -> np.ndarray:
    """The input ONNX's runner feeds light models: arange(n) / n, float32.

    Symbolic dimensions become 1, as in the runner.
    """
    tensor_type = value_info.type.tensor_type
    if tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ValueError(f"light model input {value_info.name!r} is not float32")
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1
                  for d in tensor_type.shape.dim)
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


def write_light_suite(out_dir: Path) -> int:
    light_dir = SHIPPED_DATA_DIR / "light"
    tolerances = light_tolerances()
    count = 0
    for model_path in sorted(light_dir.glob("*.onnx")):
        stem = model_path.stem                       # light_resnet50
        model_name = stem[len("light_"):] if stem.startswith("light_") else stem
        case_name, rtol, atol = tolerances.get(
            model_path.name, (f"test_{model_name}", DEFAULT_RTOL, DEFAULT_ATOL))
        model = onnx.load(str(model_path))
        expected = [light_dir / f"{stem}_output_{k}.pb"
                    for k in range(len(model.graph.output))]
        if not all(p.exists() for p in expected):
            print(f"  skipped light/{case_name}: no expected outputs shipped",
                  file=sys.stderr)
            continue
        case_dir = out_dir / "light" / case_name
        set_dir = case_dir / "test_data_set_0"
        set_dir.mkdir(parents=True)
        shutil.copyfile(model_path, case_dir / "model.onnx")
        for k, vi in enumerate(bound_inputs(model)):
            tensor = numpy_helper.from_array(dummy_input(vi), vi.name)
            (set_dir / f"input_{k}.pb").write_bytes(tensor.SerializeToString())
        for k, path in enumerate(expected):
            shutil.copyfile(path, set_dir / f"output_{k}.pb")
        source = f"onnx {onnx.__version__} onnx/backend/test/data/light/{model_path.name}"
        write_json(case_dir / "meta.json",
                   describe(model, "light", case_name, rtol, atol, 1, source))
        count += 1
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path, help="folder to write the suites into")
    args = parser.parse_args()
    out_dir: Path = args.outdir
    out_dir.mkdir(parents=True, exist_ok=True)
    # The summary doubles as the "complete" stamp: drop it first so that an
    # interrupted run is never mistaken for a finished one.
    summary_path = out_dir / "summary.json"
    summary_path.unlink(missing_ok=True)

    started = time.monotonic()
    shipped = sorted(p.name for p in SHIPPED_DATA_DIR.iterdir() if p.is_dir())
    # node: built in memory (a shipped node folder, if a later onnx has one,
    # holds the same cases). real: pointers into light, folded into light.
    copied = [s for s in shipped if s not in ("node", "light", "real")]
    suites = ["node"] + (["light"] if "light" in shipped else []) + copied

    counts: dict[str, int] = {}
    for suite in suites:
        suite_started = time.monotonic()
        shutil.rmtree(out_dir / suite, ignore_errors=True)
        if suite == "node":
            counts[suite] = write_node_suite(out_dir)
        elif suite == "light":
            counts[suite] = write_light_suite(out_dir)
        else:
            counts[suite] = copy_classic_suite(SHIPPED_DATA_DIR / suite, out_dir)
        print(f"  {suite:<18} {counts[suite]:5d} cases  "
              f"({time.monotonic() - suite_started:.1f} s)")

    write_json(summary_path, {"onnx_version": onnx.__version__, "suites": counts,
                              "total": sum(counts.values())})
    print(f"wrote {sum(counts.values())} cases in {len(counts)} suites to {out_dir} "
          f"in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
