"""Small models shared by the server tests, with their config.pbtxt texts.

Each builds an ONNX model in memory (support.make_model); the tests write them
into a temporary repository with serving.write_model.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from support import make_model

# Every fixed-size protocol datatype, with the ONNX element type and the numpy
# dtype tritonclient uses for it (BF16 travels as float32 arrays whose values
# are exact in bfloat16).
DATATYPES = {
    "BOOL": (TensorProto.BOOL, np.bool_),
    "UINT8": (TensorProto.UINT8, np.uint8),
    "UINT16": (TensorProto.UINT16, np.uint16),
    "UINT32": (TensorProto.UINT32, np.uint32),
    "UINT64": (TensorProto.UINT64, np.uint64),
    "INT8": (TensorProto.INT8, np.int8),
    "INT16": (TensorProto.INT16, np.int16),
    "INT32": (TensorProto.INT32, np.int32),
    "INT64": (TensorProto.INT64, np.int64),
    "FP16": (TensorProto.FLOAT16, np.float16),
    "BF16": (TensorProto.BFLOAT16, np.float32),
    "FP32": (TensorProto.FLOAT, np.float32),
    "FP64": (TensorProto.DOUBLE, np.float64),
}


def add_sub_model() -> onnx.ModelProto:
    """sum = a + b, diff = a - b over FP32 [batch, 4]."""
    spec = [["batch", 4]]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, *spec) for n in ("a", "b")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, *spec) for n in ("sum", "diff")]
    nodes = [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Sub", ["a", "b"], ["diff"])]
    return make_model(nodes, inputs, outputs)


ADD_SUB_CONFIG = """
name: "{name}"
backend: "onnxruntime"
max_batch_size: 8
input [
  {{ name: "a", data_type: TYPE_FP32, dims: [ 4 ] }},
  {{ name: "b", data_type: TYPE_FP32, dims: [ 4 ] }}
]
output [
  {{ name: "sum", data_type: TYPE_FP32, dims: [ 4 ] }},
  {{ name: "diff", data_type: TYPE_FP32, dims: [ 4 ] }}
]
instance_group [ {{ kind: KIND_CPU, count: 2 }} ]
"""


def identity_types_model(types=tuple(DATATYPES)) -> onnx.ModelProto:
    """One Identity per datatype in `types`: in_<T> -> out_<T>, shape [batch, 3]."""
    inputs, outputs, nodes = [], [], []
    for name in types:
        elem = DATATYPES[name][0]
        inputs.append(helper.make_tensor_value_info(f"in_{name}", elem, ["batch", 3]))
        outputs.append(helper.make_tensor_value_info(f"out_{name}", elem, ["batch", 3]))
        nodes.append(helper.make_node("Identity", [f"in_{name}"], [f"out_{name}"]))
    return make_model(nodes, inputs, outputs)


def vector_relu_model() -> onnx.ModelProto:
    """y = relu(x) over FP32 [n]: any length, for large bodies and messages."""
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])]
    return make_model(nodes, inputs, outputs)


VECTOR_RELU_CONFIG = """
name: "vector_relu"
platform: "onnxruntime_onnx"
max_batch_size: 0
input [ { name: "x", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "y", data_type: TYPE_FP32, dims: [ -1 ] } ]
"""
