"""Seeds fuzz/corpus/load_model with small valid ONNX models that reach deep into
the importer: old-opset attribute forms, initializers shadowing inputs, Constant
nodes, typed tensor fields, external-data references, unsupported ops.

    .venv/bin/python fuzz/make_corpus.py
"""

import glob
import os
import shutil

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "load_model")


def model(nodes, inputs, outputs, inits=(), opset=17, ir=8):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir
    return m


def vi(name, dtype=TensorProto.FLOAT, shape=("N", 3, 4, 4)):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((3, 3, 3, 3)).astype(np.float32), "w")
    seeds = {
        "conv_relu": model(
            [
                helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], strides=[1, 1]),
                helper.make_node("Relu", ["c"], ["y"]),
            ],
            [vi("x")],
            [vi("y")],
            [w],
        ),
        "old_opset_attrs": model(
            [
                helper.make_node("Squeeze", ["x"], ["s"], axes=[0]),
                helper.make_node("Slice", ["s"], ["t"], starts=[0], ends=[2], axes=[0]),
                helper.make_node("Pad", ["t"], ["p"], pads=[0, 1, 1, 0, 1, 1], value=0.5),
                helper.make_node("ReduceMean", ["p"], ["y"], axes=[1], keepdims=0),
            ],
            [vi("x", shape=(1, 3, 4, 4))],
            [vi("y", shape=())],
            opset=9,
        ),
        "ir3_shadowed_inputs": model(
            [helper.make_node("Add", ["x", "b"], ["y"])],
            [vi("x", shape=(2,)), vi("b", shape=(2,))],
            [vi("y", shape=(2,))],
            [numpy_helper.from_array(np.array([1, 2], np.float32), "b")],
            opset=7,
            ir=3,
        ),
        "constants_and_typed_fields": model(
            [
                helper.make_node("Constant", [], ["k"], value_ints=[1, 2]),
                helper.make_node("Constant", [], ["h"], value=helper.make_tensor("h", TensorProto.FLOAT16, [2], [1.0, 2.0])),
                helper.make_node("Cast", ["h"], ["hf"], to=TensorProto.FLOAT),
                helper.make_node("Reshape", ["hf", "k"], ["y"]),
            ],
            [],
            [vi("y", shape=(1, 2))],
        ),
        "external_reference": model(
            [helper.make_node("Identity", ["e"], ["y"])],
            [],
            [vi("y", shape=(4,))],
            [
                onnx.TensorProto(
                    name="e",
                    dims=[4],
                    data_type=TensorProto.FLOAT,
                    data_location=TensorProto.EXTERNAL,
                    external_data=[
                        onnx.StringStringEntryProto(key="location", value="weights.bin"),
                        onnx.StringStringEntryProto(key="offset", value="0"),
                        onnx.StringStringEntryProto(key="length", value="16"),
                    ],
                )
            ],
        ),
        "resize_split_topk": model(
            [
                helper.make_node("Resize", ["x", "", "sc"], ["r"], mode="linear"),
                helper.make_node("Split", ["r"], ["a", "b"], axis=1, num_outputs=2),
                helper.make_node("TopK", ["a", "k"], ["v", "i"], axis=-1),
            ],
            [vi("x", shape=(1, 2, 4, 4))],
            [vi("v"), vi("i", TensorProto.INT64)],
            [
                numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "sc"),
                numpy_helper.from_array(np.array([2], np.int64), "k"),
            ],
            opset=18,
        ),
        "unsupported_ops": model(
            [
                helper.make_node("NonZero", ["x"], ["n"]),
                helper.make_node("FusedGemm", ["x", "x"], ["y"], domain="com.microsoft"),
            ],
            [vi("x")],
            [vi("y")],
        ),
    }
    for name, m in seeds.items():
        with open(os.path.join(OUT, f"{name}.onnx"), "wb") as f:
            f.write(m.SerializeToString())
    # The onnx package's own small test models, opset 7 and newer.
    data = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
    copied = 0
    for path in sorted(glob.glob(os.path.join(data, "*", "*", "model.onnx"))):
        if os.path.getsize(path) > 64 * 1024:
            continue
        opset = max((o.version for o in onnx.load(path).opset_import if o.domain in ("", "ai.onnx")), default=0)
        if opset >= 7:
            shutil.copy(path, os.path.join(OUT, os.path.basename(os.path.dirname(path)) + ".onnx"))
            copied += 1
    print(f"wrote {len(seeds)} seeds and copied {copied} test models to {OUT}")


if __name__ == "__main__":
    main()
