"""Builds the bundled example model repository (Triton layout) and sample inputs.

    python examples/make_examples.py

Writes examples/model_repository/<model>/{config.pbtxt,1/model.onnx} and
examples/inputs/<model>.<input>.npy. Deterministic (fixed seeds), onnx + numpy only.
The outputs are checked in so a fresh clone can run them without Python.
"""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent
REPO = ROOT / "model_repository"
INPUTS = ROOT / "inputs"


def const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def simple_cnn():
    """Conv→Relu→MaxPool→Conv→Relu→GlobalAveragePool→Flatten→Gemm→Softmax on 3×32×32
    images: the reference documents' first test model, small enough to check in."""
    rng = np.random.default_rng(7)

    def he(shape, fan_in):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    inits = [
        const("conv1.w", he((16, 3, 3, 3), 27)),
        const("conv1.b", (rng.standard_normal(16) * 0.1).astype(np.float32)),
        const("conv2.w", he((32, 16, 3, 3), 144)),
        const("conv2.b", (rng.standard_normal(32) * 0.1).astype(np.float32)),
        const("fc.w", he((10, 32), 32)),
        const("fc.b", (rng.standard_normal(10) * 0.1).astype(np.float32)),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv1.w", "conv1.b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2.w", "conv2.b"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "simple_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8,
                              producer_name="smelt-examples")
    onnx.checker.check_model(model, full_check=True)
    config = """name: "simple_cnn"
backend: "smelt"
max_batch_size: 8
input [
  {
    name: "input"
    data_type: TYPE_FP32
    dims: [ 3, 32, 32 ]
  }
]
output [
  {
    name: "probabilities"
    data_type: TYPE_FP32
    dims: [ 10 ]
  }
]
instance_group [ { count: 1, kind: KIND_CPU } ]
"""
    sample = {"input": np.random.default_rng(11).standard_normal((1, 3, 32, 32)).astype(np.float32)}
    return model, config, sample


def main():
    for name, build in [("simple_cnn", simple_cnn)]:
        model, config, sample = build()
        (REPO / name / "1").mkdir(parents=True, exist_ok=True)
        onnx.save(model, REPO / name / "1" / "model.onnx")
        (REPO / name / "config.pbtxt").write_text(config)
        INPUTS.mkdir(exist_ok=True)
        for input_name, array in sample.items():
            np.save(INPUTS / f"{name}.{input_name}.npy", array)
        print(f"wrote {name}")


if __name__ == "__main__":
    main()
