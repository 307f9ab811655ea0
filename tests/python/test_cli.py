"""The `smelt` command line: `run` on tiny models built here, clean refusals of
bad inputs and bad models, `inspect` on ResNet-50, and the bundled example.

A refusal must exit with a non-zero code, print no Rust panic ("panicked at"),
and say what was wrong: the input's name, and what was given against what the
model wants.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from support import (
    PANIC_MARKER, REPO_ROOT, Smelt, assert_refused, compare_outputs, make_model, save_model,
    without_paths,
)

TOLERANCE = 1e-5       # tiny graphs: a handful of float32 operations per value

# --------------------------------------------------------------------------
# Tiny models
# --------------------------------------------------------------------------


def two_input_model() -> onnx.ModelProto:
    """left, right: f32 [batch, 4] -> z = Relu((left + right) * left),
    t = Sigmoid(right). Two inputs sharing the symbolic dim `batch`."""
    f32 = TensorProto.FLOAT
    nodes = [
        helper.make_node("Add", ["left", "right"], ["sum"], name="add"),
        helper.make_node("Mul", ["sum", "left"], ["product"], name="mul"),
        helper.make_node("Relu", ["product"], ["z"], name="relu"),
        helper.make_node("Sigmoid", ["right"], ["t"], name="sigmoid"),
    ]
    return make_model(
        nodes,
        [helper.make_tensor_value_info("left", f32, ["batch", 4]),
         helper.make_tensor_value_info("right", f32, ["batch", 4])],
        [helper.make_tensor_value_info("z", f32, ["batch", 4]),
         helper.make_tensor_value_info("t", f32, ["batch", 4])],
        name="two_inputs",
    )


def dense_softmax_model() -> onnx.ModelProto:
    """x: f32 [batch, 8] -> probs = Softmax(x @ W + b) over 5 classes."""
    rng = np.random.default_rng(1)
    weight = numpy_helper.from_array(rng.standard_normal((8, 5)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "b")
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"], name="matmul"),
        helper.make_node("Add", ["xw", "b"], ["logits"], name="add_bias"),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=-1),
    ]
    return make_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 5])],
        [weight, bias],
        name="dense_softmax",
    )


def embedding_model() -> onnx.ModelProto:
    """ids: i64 [batch, seq] -> pooled = mean over seq of table[ids] (f32
    [batch, 4]) and best = argmax of pooled (i64 [batch, 1]): an integer input
    and an integer output."""
    rng = np.random.default_rng(2)
    table = numpy_helper.from_array(rng.standard_normal((10, 4)).astype(np.float32), "table")
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["embedded"], name="gather", axis=0),
        helper.make_node("ReduceMean", ["embedded"], ["pooled"], name="mean",
                         axes=[1], keepdims=0),
        helper.make_node("ArgMax", ["pooled"], ["best"], name="argmax", axis=1, keepdims=1),
    ]
    return make_model(
        nodes,
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("best", TensorProto.INT64, ["batch", 1])],
        [table],
        name="embedding",
    )


def unsupported_ops_model() -> onnx.ModelProto:
    """x -> made-up default-domain op -> Relu -> made-up com.microsoft op."""
    f32 = TensorProto.FLOAT
    nodes = [
        helper.make_node("FrobnicateTensor", ["x"], ["a"], name="frobnicate_node"),
        helper.make_node("Relu", ["a"], ["b"], name="relu_node"),
        helper.make_node("SmeltNoSuchContribOp", ["b"], ["y"], name="contrib_node",
                         domain="com.microsoft"),
    ]
    return make_model(
        nodes,
        [helper.make_tensor_value_info("x", f32, [2, 4])],
        [helper.make_tensor_value_info("y", f32, [2, 4])],
        extra_opsets={"com.microsoft": 1},
        name="unsupported",
    )


UNSUPPORTED_NODES = [("FrobnicateTensor", "frobnicate_node"),
                     ("SmeltNoSuchContribOp", "contrib_node")]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="module")
def two_inputs(tiny_dir) -> Path:
    return save_model(two_input_model(), tiny_dir / "two_inputs.onnx")


def good_two_input_feeds(batch: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {"left": rng.standard_normal((batch, 4)).astype(np.float32),
            "right": rng.standard_normal((batch, 4)).astype(np.float32)}


# --------------------------------------------------------------------------
# Correct results
# --------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 3])
def test_two_inputs_two_outputs(batch, two_inputs, smelt, ort_reference):
    feeds = good_two_input_feeds(batch)
    got = smelt.run(two_inputs, feeds)
    compare_outputs(got.outputs, ort_reference.run(two_inputs, feeds), TOLERANCE)
    assert got.run_ms is not None, f"no 'loaded in X ms, ran in Y ms' line:\n{got.stderr}"


def test_dense_softmax(tiny_dir, smelt, ort_reference):
    model = save_model(dense_softmax_model(), tiny_dir / "dense_softmax.onnx")
    feeds = {"x": np.random.default_rng(4).standard_normal((6, 8)).astype(np.float32)}
    got = smelt.run(model, feeds)
    compare_outputs(got.outputs, ort_reference.run(model, feeds), TOLERANCE)
    np.testing.assert_allclose(got.outputs["probs"].sum(axis=-1), 1.0, rtol=1e-5)


def test_integer_input_and_output(tiny_dir, smelt, ort_reference):
    model = save_model(embedding_model(), tiny_dir / "embedding.onnx")
    feeds = {"ids": np.random.default_rng(5).integers(0, 10, size=(3, 7), dtype=np.int64)}
    got = smelt.run(model, feeds)
    compare_outputs(got.outputs, ort_reference.run(model, feeds), TOLERANCE)


def test_bundled_example_matches_onnxruntime(smelt, ort_reference):
    """The README's example: the checked-in simple_cnn model and input."""
    model = REPO_ROOT / "examples/model_repository/simple_cnn/1/model.onnx"
    feeds = {"input": REPO_ROOT / "examples/inputs/simple_cnn.input.npy"}
    got = smelt.run(model, feeds)
    compare_outputs(got.outputs, ort_reference.run(model, feeds), 1e-4)


# --------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------


def dims_pattern(*dims) -> str:
    """A regex for a shape written as [2, 4, 1], (2,4,1) or 2x4x1."""
    return r"(?<![\w])" + r"\s*[,x×]\s*".join(re.escape(str(d)) for d in dims) + r"(?![\w])"


def assert_says(message: str, pattern: str, what: str) -> None:
    """MESSAGE, paths aside, matches PATTERN (case-insensitive, multi-line)."""
    assert re.search(pattern, without_paths(message), re.IGNORECASE | re.MULTILINE), (
        f"the message does not say {what} (/{pattern}/):\n{message}")


def test_missing_input_is_refused(two_inputs, smelt):
    paths = smelt.write_inputs(good_two_input_feeds())
    del paths["right"]
    message = assert_refused(smelt.run_raw(two_inputs, paths), "right")
    assert_says(message, r"missing|required|not (given|provided)", "that it is missing")


def test_unknown_input_is_refused(two_inputs, smelt):
    feeds = good_two_input_feeds()
    feeds["bogus"] = feeds["left"].copy()
    message = assert_refused(smelt.run_raw(two_inputs, smelt.write_inputs(feeds)), "bogus")
    # The message also tells which inputs the model does have.
    assert "left" in message and "right" in message, message


def test_wrong_dtype_is_refused(two_inputs, smelt):
    feeds = good_two_input_feeds()
    feeds["left"] = feeds["left"].astype(np.float64)
    message = assert_refused(smelt.run_raw(two_inputs, smelt.write_inputs(feeds)), "left")
    assert_says(message, r"\b(f64|float64|double)\b", "the dtype given (f64)")
    assert_says(message, r"\b(f32|float32|float)\b", "the dtype wanted (f32)")


def test_wrong_rank_is_refused(two_inputs, smelt):
    feeds = good_two_input_feeds(2)
    feeds["left"] = feeds["left"].reshape(2, 4, 1)
    message = assert_refused(smelt.run_raw(two_inputs, smelt.write_inputs(feeds)), "left")
    assert_says(message, dims_pattern(2, 4, 1), "the shape given [2, 4, 1]")
    assert_says(message, dims_pattern("batch", 4), "the shape wanted [batch, 4]")


def test_wrong_fixed_dim_is_refused(two_inputs, smelt):
    feeds = good_two_input_feeds(2)
    feeds["left"] = np.ones((2, 5), dtype=np.float32)
    message = assert_refused(smelt.run_raw(two_inputs, smelt.write_inputs(feeds)), "left")
    assert_says(message, dims_pattern(2, 5), "the shape given [2, 5]")
    assert_says(message, dims_pattern("batch", 4), "the shape wanted [batch, 4]")


def test_inconsistent_symbolic_dim_is_refused(two_inputs, smelt):
    rng = np.random.default_rng(6)
    feeds = {"left": rng.standard_normal((2, 4)).astype(np.float32),
             "right": rng.standard_normal((3, 4)).astype(np.float32)}
    message = assert_refused(smelt.run_raw(two_inputs, smelt.write_inputs(feeds)),
                             "left", "right", "batch")
    assert_says(message, r"\b2\b", "one input's batch (2)")
    assert_says(message, r"\b3\b", "the other input's batch (3)")


def test_file_that_is_not_npy_is_refused(two_inputs, smelt, tmp_path):
    paths = smelt.write_inputs(good_two_input_feeds())
    paths["left"] = tmp_path / "left-not-really.npy"
    paths["left"].write_text("this is a text file, not a numpy array\n")
    message = assert_refused(smelt.run_raw(two_inputs, paths), "left", "left-not-really.npy")
    assert_says(message, r"npy|numpy", "that the file is not a .npy file")


def test_missing_input_file_is_refused(two_inputs, smelt, tmp_path):
    paths = smelt.write_inputs(good_two_input_feeds())
    paths["left"] = tmp_path / "no-such-dir" / "left.npy"
    assert_refused(smelt.run_raw(two_inputs, paths), "left", str(paths["left"]))


# --------------------------------------------------------------------------
# Bad models
# --------------------------------------------------------------------------


def run_bad_model(smelt, path: Path):
    """`smelt run` on PATH with inputs that would suit the two-input model."""
    return smelt.run_raw(path, smelt.write_inputs(good_two_input_feeds()))


def test_truncated_model_is_refused(tmp_path, smelt):
    # A weight large enough that cutting the file in half lands inside the
    # graph, whose declared length then runs past the end of the file.
    model = dense_softmax_model()
    big = numpy_helper.from_array(np.ones((64, 64), dtype=np.float32), "unused_weight")
    model.graph.initializer.append(big)
    data = model.SerializeToString()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    done = smelt.run_raw(path, smelt.write_inputs(
        {"x": np.ones((1, 8), dtype=np.float32)}))
    assert_refused(done, "truncated.onnx")


def test_garbage_model_is_refused(tmp_path, smelt):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert_refused(run_bad_model(smelt, path), "garbage.onnx")


def test_empty_model_file_is_refused(tmp_path, smelt):
    path = tmp_path / "blank.onnx"
    path.write_bytes(b"")
    message = assert_refused(run_bad_model(smelt, path), "blank.onnx")
    # An empty file decodes as an empty protobuf message; the user should hear
    # that the file is empty or not a model, not about a detail of one.
    assert_says(message, r"empty|0 bytes|no graph|not a valid ONNX model|not an ONNX model",
                "that the file is empty or not a model")


@pytest.mark.parametrize("opset", [3, 99])
def test_unsupported_opset_is_refused(opset, tmp_path, smelt):
    model = two_input_model()
    model.opset_import[0].version = opset
    path = save_model(model, tmp_path / f"opset{opset}.onnx")
    message = assert_refused(run_bad_model(smelt, path))
    assert_says(message, rf"opset\D{{0,20}}\b{opset}\b", f"the model's opset ({opset})")


def test_unsupported_ops_are_all_listed(tmp_path, smelt):
    path = save_model(unsupported_ops_model(), tmp_path / "unsupported.onnx")
    done = smelt.run_raw(path, smelt.write_inputs({"x": np.ones((2, 4), dtype=np.float32)}))
    must = [text for pair in UNSUPPORTED_NODES for text in pair]
    message = assert_refused(done, *must)
    assert "relu_node" not in message, f"a supported node is listed as unsupported:\n{message}"


# --------------------------------------------------------------------------
# smelt inspect
# --------------------------------------------------------------------------

BYTES = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(B|KiB|MiB|GiB|TiB|kB|KB|MB|GB|TB)\b")
BYTE_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
              "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
FLOP_UNITS = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}

# ResNet-50 v1.5 at 224x224: 4.09 G multiply-adds = 8.2 GFLOP per image.
RESNET50_GFLOP = 8.2
RESNET50_BN_STATISTICS = 53_120
RESNET50_PARAMETERS = 25_557_032
RESNET50_CONVS = 53


def inspect(smelt, *args) -> str:
    done = smelt.cli("inspect", *args)
    assert done.returncode == 0 and PANIC_MARKER not in done.stderr, (
        f"smelt inspect failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


@pytest.fixture(scope="module")
def resnet_inspect(models_dir, smelt_bin, tmp_path_factory) -> str:
    runner = Smelt(smelt_bin, tmp_path_factory.mktemp("inspect"))
    return inspect(runner, models_dir / "resnet50.onnx")


def test_inspect_resnet50_header(resnet_inspect):
    out = resnet_inspect
    assert_says(out, r"^opsets?\b.*\b17\b", "the opset (17)")
    # The input with its symbolic batch dimension.
    assert_says(out, r"^\s+input\s.*\bbatch\b.*\b224\b", "input 'input' [batch, 3, 224, 224]")
    assert_says(out, r"^\s+logits\s.*\bbatch\b.*\b1000\b", "output 'logits' [batch, 1000]")
    match = re.search(r"^parameters\s+([0-9,]+)", out, re.MULTILINE)
    assert match, f"no parameter count:\n{out}"
    count = int(match.group(1).replace(",", ""))
    # ONNX does not tell trained weights from buffers, so Smelt counts every
    # initializer element: torchvision's 25,557,032 weights and biases plus
    # BatchNormalization's running means and variances (53,120 values).
    assert count == RESNET50_PARAMETERS + RESNET50_BN_STATISTICS, (
        f"parameter count {count:,}, expected {RESNET50_PARAMETERS + RESNET50_BN_STATISTICS:,}")


def test_inspect_resnet50_histogram(resnet_inspect):
    conv = re.search(r"^\s+Conv\s+(\d+)\s*$", resnet_inspect, re.MULTILINE)
    assert conv, f"no Conv line in the op histogram:\n{resnet_inspect}"
    assert int(conv.group(1)) == RESNET50_CONVS, conv.group(0)
    assert re.search(r"^\s+BatchNormalization\s+53\s*$", resnet_inspect, re.MULTILINE)


def test_inspect_resnet50_flops(resnet_inspect):
    match = re.search(r"FLOPs\s+([0-9.]+)\s*([KMGT]?)FLOP", resnet_inspect)
    assert match, f"no FLOPs estimate:\n{resnet_inspect}"
    gflop = float(match.group(1)) * FLOP_UNITS[match.group(2)] / 1e9
    print(f"ResNet-50 batch 1: {gflop:.3f} GFLOP")
    assert abs(gflop - RESNET50_GFLOP) <= 0.05 * RESNET50_GFLOP, (
        f"{gflop:.2f} GFLOP is not within 5% of {RESNET50_GFLOP}")


def test_inspect_resnet50_memory_plan(resnet_inspect):
    line = next((l for l in resnet_inspect.splitlines() if "planned peak" in l), None)
    assert line, f"no planned peak memory line:\n{resnet_inspect}"
    sizes = [float(v) * BYTE_UNITS[u] for v, u in BYTES.findall(line)]
    assert len(sizes) >= 2, f"expected the planned and unplanned sizes in: {line!r}"
    planned, unplanned = sizes[0], sizes[1]
    print(f"ResNet-50 batch 1: planned {planned / 2**20:.1f} MiB, "
          f"unplanned {unplanned / 2**20:.1f} MiB")
    assert 0 < planned < unplanned, line


def test_inspect_optimized_folds_and_fuses(models_dir, smelt):
    out = inspect(smelt, models_dir / "resnet50.onnx", "--optimized")
    before = re.search(r"^ops\s+(\d+) nodes", out, re.MULTILINE)
    after = re.search(r"optimi[sz]ed\s+(\d+) nodes", out)
    assert before and after, f"node counts before and after passes not shown:\n{out}"
    assert int(after.group(1)) < int(before.group(1)), (before.group(0), after.group(0))
    graph = out.split("graph after passes", 1)
    assert len(graph) == 2, f"--optimized printed no graph:\n{out}"
    nodes = graph[1]
    assert not re.search(r"\sBatchNormalization[ (]", nodes), "a BatchNormalization is left"
    assert re.search(r"\bConv \+Relu\b", nodes), "no Conv with a fused Relu"


def test_inspect_lists_unsupported_ops(tmp_path, smelt):
    path = save_model(unsupported_ops_model(), tmp_path / "unsupported.onnx")
    out = inspect(smelt, path)
    # The section from the line that starts with "unsupported" on.
    section = re.split(r"^unsupported\b", out, maxsplit=1, flags=re.MULTILINE)
    assert len(section) == 2, f"no 'unsupported' section:\n{out}"
    for op_type, node in UNSUPPORTED_NODES:
        assert re.search(rf"{op_type}.*{node}", section[1]), (
            f"{op_type} (node {node}) is not listed as unsupported:\n{out}")
    assert "relu_node" not in section[1], f"a supported node is listed:\n{out}"
