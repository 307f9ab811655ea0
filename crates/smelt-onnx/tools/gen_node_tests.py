"""Writes the onnx package's per-operator backend test models (which its wheel
ships as Python code, not as files) to a directory, for the importer's
`onnx_backend_data` test:

    .venv/bin/python crates/smelt-onnx/tools/gen_node_tests.py /tmp/onnx_node_data
    SMELT_ONNX_TEST_DATA=/tmp/onnx_node_data cargo test -p smelt-onnx --test onnx_backend_data -- --nocapture
"""

import os
import sys

import onnx.backend.test.case.node as node_cases
from onnx import numpy_helper


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/onnx_node_data"
    written = 0
    for case in node_cases.collect_testcases(None):
        case_dir = os.path.join(out, "node", case.name)
        os.makedirs(case_dir, exist_ok=True)
        with open(os.path.join(case_dir, "model.onnx"), "wb") as f:
            f.write(case.model.SerializeToString())
        # Only plain tensor inputs are written; sequences and maps are not Smelt's.
        data_dir = os.path.join(case_dir, "test_data_set_0")
        os.makedirs(data_dir, exist_ok=True)
        inputs, _ = case.data_sets[0]
        for j, value in enumerate(inputs):
            if not case.model.graph.input[j].type.HasField("tensor_type"):
                continue
            try:
                proto = numpy_helper.from_array(value, case.model.graph.input[j].name)
            except Exception:  # noqa: BLE001 - exotic inputs (strings of objects) are skipped
                continue
            with open(os.path.join(data_dir, f"input_{j}.pb"), "wb") as f:
                f.write(proto.SerializeToString())
        written += 1
    print(f"wrote {written} models to {out}")


if __name__ == "__main__":
    main()
