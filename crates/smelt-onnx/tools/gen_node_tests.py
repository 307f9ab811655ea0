"""Writes the onnx package's per-operator backend test cases (which its wheel
ships as Python code, not as files) to a directory in the classic layout
(`node/<case>/model.onnx` + `test_data_set_0/{input,output}_N.pb`), for the
importer's `onnx_backend_data` test and for `smelt conformance`:

    .venv/bin/python crates/smelt-onnx/tools/gen_node_tests.py /tmp/onnx_node_data [--older 7,9,11,12]
    SMELT_ONNX_TEST_DATA=/tmp/onnx_node_data cargo test -p smelt-onnx --test onnx_backend_data -- --nocapture
    smelt conformance /tmp/onnx_node_data

`--older` also writes every case the onnx version converter can take down to
those opsets (under `node_opsetN/`), so the importer's handling of old attribute
forms is checked against the same expected outputs.
"""

import os
import sys

import onnx
import onnx.backend.test.case.node as node_cases
from onnx import TensorProto, numpy_helper, version_converter


def older_versions(model, opsets):
    current = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    for opset in opsets:
        if opset >= current:
            continue
        try:
            converted = version_converter.convert_version(model, opset)
            onnx.checker.check_model(converted)
        except Exception:  # noqa: BLE001 - many ops cannot go down; those are skipped
            continue
        yield opset, converted


def write_case(case_dir, model, data_set) -> None:
    os.makedirs(case_dir, exist_ok=True)
    with open(os.path.join(case_dir, "model.onnx"), "wb") as f:
        f.write(model.SerializeToString())
    # Only plain tensors are written; sequences, maps and optionals are not Smelt's.
    data_dir = os.path.join(case_dir, "test_data_set_0")
    os.makedirs(data_dir, exist_ok=True)
    inputs, outputs = data_set
    for kind, values, infos in (("input", inputs, model.graph.input), ("output", outputs, model.graph.output)):
        for j, value in enumerate(values):
            if not infos[j].type.HasField("tensor_type"):
                continue
            try:
                proto = value if isinstance(value, TensorProto) else numpy_helper.from_array(value, infos[j].name)
            except Exception:  # noqa: BLE001 - exotic values (object arrays) are skipped
                continue
            with open(os.path.join(data_dir, f"{kind}_{j}.pb"), "wb") as f:
                f.write(proto.SerializeToString())


def main() -> None:
    args = sys.argv[1:]
    older = []
    if "--older" in args:
        i = args.index("--older")
        older = [int(v) for v in args[i + 1].split(",")]
        del args[i : i + 2]
    out = args[0] if args else "/tmp/onnx_node_data"
    written = 0
    for case in node_cases.collect_testcases(None):
        variants = [("node", case.model)]
        variants += [(f"node_opset{v}", m) for v, m in older_versions(case.model, older)]
        for suite, model in variants:
            write_case(os.path.join(out, suite, case.name), model, case.data_sets[0])
            written += 1
    print(f"wrote {written} models to {out}")


if __name__ == "__main__":
    main()
