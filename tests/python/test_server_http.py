"""`smelt serve` over HTTP, driven through the real `tritonclient.http` package.

A module-wide server (serving.SmeltServer) runs in explicit model-control mode
on free loopback ports against a temporary model repository of small models
built here with onnx.helper (plus the bundled simple_cnn). Every test that sends
a bad request checks the status code Triton would answer with and that the
server still serves afterwards. Stopping the server with SIGTERM must end it
cleanly. Answers are also compared with real Triton's, recorded in
triton_golden/ (see its README.md).
"""

from __future__ import annotations

import gzip
import http.client
import json
import re
import shutil
import signal
import subprocess
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import pytest
import tritonclient.http as httpclient
from onnx import TensorProto, helper
from tritonclient.utils import InferenceServerException

from server_models import (ADD_SUB_CONFIG, DATATYPES, VECTOR_RELU_CONFIG, add_sub_model, identity_types_model,
                           vector_relu_model)
from serving import SmeltServer, write_model
from support import PANIC_MARKER, REPO_ROOT, make_model

# Real Triton's answers to the requests of test_answers_match_triton.
GOLDEN = Path(__file__).parent / "triton_golden"
# --http-max-input-size of the module's server: small, so a too-large body is
# cheap to send.
MAX_INPUT_SIZE = 1 << 20

# --------------------------------------------------------------------------
# The test repository
# --------------------------------------------------------------------------


def fixed_matmul_model() -> onnx.ModelProto:
    """y = x @ W with x FP32 [2, 3] fixed: cannot batch, so autocomplete leaves
    max_batch_size 0."""
    weight = helper.make_tensor("W", TensorProto.FLOAT, [3, 2], [1, 2, 3, 4, 5, 6])
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])]
    return make_model(nodes, inputs, outputs, initializers=[weight])


def golden_add_model() -> onnx.ModelProto:
    """sum = a + b over FP32 [batch, n]: the model real Triton served for triton_golden/."""
    spec = [["batch", "n"]]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, *spec) for n in ("a", "b")]
    outputs = [helper.make_tensor_value_info("sum", TensorProto.FLOAT, *spec)]
    return make_model([helper.make_node("Add", ["a", "b"], ["sum"])], inputs, outputs)


GOLDEN_ADD_CONFIG = """
name: "add"
backend: "onnxruntime"
max_batch_size: 64
input [
  { name: "a", data_type: TYPE_FP32, dims: [ -1 ] },
  { name: "b", data_type: TYPE_FP32, dims: [ -1 ] }
]
output [ { name: "sum", data_type: TYPE_FP32, dims: [ -1 ] } ]
"""


@pytest.fixture(scope="module")
def model_repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("model_repository")
    for name in ("add_sub", "stats_model", "reloadable"):
        write_model(repo, name, add_sub_model(), ADD_SUB_CONFIG.format(name=name))
    write_model(repo, "identity_types", identity_types_model(), None)
    write_model(repo, "fixed_matmul", fixed_matmul_model(), None)
    write_model(repo, "vector_relu", vector_relu_model(), VECTOR_RELU_CONFIG)
    write_model(repo, "add", golden_add_model(), GOLDEN_ADD_CONFIG)
    # Three versions; the policy serves the latest two.
    write_model(repo, "versioned", add_sub_model(),
                ADD_SUB_CONFIG.format(name="versioned")
                + "version_policy: { latest: { num_versions: 2 } }\n", versions=(1, 2, 3))
    # Models that must be UNAVAILABLE with a reason while the rest serve.
    write_model(repo, "python_model", add_sub_model(), 'backend: "python"\n')
    write_model(repo, "broken_config", add_sub_model(),
                'name: "broken_config"\nmax_batch_size: 8\ninput [ { nme: "a" } ]\n')
    write_model(repo, "wrong_dtype", add_sub_model(),
                ADD_SUB_CONFIG.format(name="wrong_dtype").replace(
                    'name: "a", data_type: TYPE_FP32', 'name: "a", data_type: TYPE_INT32'))
    shutil.copytree(REPO_ROOT / "examples" / "model_repository" / "simple_cnn", repo / "simple_cnn")
    return repo


# --------------------------------------------------------------------------
# Running the server
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(smelt_bin: Path, model_repo: Path, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "smelt-serve.log"
    srv = SmeltServer(smelt_bin, model_repo, log, "--threads", "2",
                      "--model-control-mode", "explicit", "--load-model", "*",
                      "--http-max-input-size", str(MAX_INPUT_SIZE),
                      "--exit-timeout-secs", "20").wait_ready()
    yield srv
    text = srv.stop_cleanly()
    assert "SIGTERM received" in text and "shutting down" in text, text


@pytest.fixture
def client(server: SmeltServer) -> httpclient.InferenceServerClient:
    c = server.http_client()
    yield c
    c.close()


def assert_error(excinfo, status: int, *mentions: str) -> str:
    error = excinfo.value
    assert isinstance(error, InferenceServerException)
    assert error.status() == str(status), f"status {error.status()}, expected {status}: {error}"
    message = error.message()
    for text in mentions:
        assert text in message, f"the error does not mention {text!r}: {message}"
    return message


def assert_still_serving(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    a = np.arange(4, dtype=np.float32).reshape(1, 4)
    result = client.infer("add_sub", add_sub_inputs(a, a))
    np.testing.assert_array_equal(result.as_numpy("sum"), a + a)


def add_sub_inputs(a: np.ndarray, b: np.ndarray, binary: bool = True) -> list:
    inputs = []
    for name, value in (("a", a), ("b", b)):
        tensor = httpclient.InferInput(name, list(value.shape), "FP32")
        tensor.set_data_from_numpy(value, binary_data=binary)
        inputs.append(tensor)
    return inputs


# --------------------------------------------------------------------------
# Health and metadata
# --------------------------------------------------------------------------


def test_health(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("add_sub")
    assert client.is_model_ready("add_sub", "1")
    assert not client.is_model_ready("add_sub", "7")
    assert not client.is_model_ready("no_such_model")
    assert not client.is_model_ready("python_model")


def test_server_metadata(client):
    meta = client.get_server_metadata()
    assert meta["name"] == "smelt"
    assert meta["version"]
    # Exactly what is implemented is advertised.
    assert sorted(meta["extensions"]) == sorted([
        "binary_tensor_data", "model_repository", "model_configuration", "statistics", "parameters",
        "system_shared_memory", "logging"])


def test_model_metadata(client):
    meta = client.get_model_metadata("add_sub")
    assert meta["name"] == "add_sub"
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "a", "datatype": "FP32", "shape": [-1, 4]},
                              {"name": "b", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in meta["outputs"]] == ["sum", "diff"]
    assert client.get_model_metadata("add_sub", "1") == meta

    meta = client.get_model_metadata("identity_types")
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {f"in_{t}": t for t in DATATYPES}
    assert all(i["shape"] == [-1, 3] for i in meta["inputs"])

    meta = client.get_model_metadata("fixed_matmul")
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [2, 3]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [2, 2]}]


def test_model_config_json(client):
    config = client.get_model_config("add_sub")
    assert config["name"] == "add_sub"
    assert config["backend"] == "onnxruntime"
    assert config["max_batch_size"] == 8
    assert config["input"][0]["data_type"] == "TYPE_FP32"
    assert config["input"][0]["dims"] == [4]
    assert config["output"][1]["name"] == "diff"
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert config["instance_group"][0]["count"] == 2
    assert config["version_policy"] == {"latest": {"num_versions": 1}}


def test_config_completed_from_the_model(client):
    # No config.pbtxt: everything comes from the model. Every input and output
    # has a variable first dimension, so max_batch_size is Triton's default 4.
    config = client.get_model_config("identity_types")
    assert config["max_batch_size"] == 4
    assert [i["name"] for i in config["input"]] == [f"in_{t}" for t in DATATYPES]
    assert all(i["dims"] == [3] for i in config["input"] + config["output"])
    assert config["input"][list(DATATYPES).index("FP16")]["data_type"] == "TYPE_FP16"
    assert config["platform"] == "onnxruntime_onnx"
    # Fixed first dimension: no batching.
    config = client.get_model_config("fixed_matmul")
    assert config["max_batch_size"] == 0
    assert config["input"][0]["dims"] == [2, 3]


# --------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------


def test_infer_json(client):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 4), dtype=np.float32)
    b = rng.standard_normal((3, 4), dtype=np.float32)
    outputs = [httpclient.InferRequestedOutput("sum", binary_data=False),
               httpclient.InferRequestedOutput("diff", binary_data=False)]
    result = client.infer("add_sub", add_sub_inputs(a, b, binary=False), outputs=outputs,
                          request_id="req-42")
    response = result.get_response()
    assert response["id"] == "req-42"
    assert response["model_name"] == "add_sub"
    assert response["model_version"] == "1"
    assert "data" in response["outputs"][0]
    np.testing.assert_allclose(result.as_numpy("sum"), a + b, rtol=1e-6)
    np.testing.assert_allclose(result.as_numpy("diff"), a - b, rtol=1e-6)


def test_infer_binary_and_output_subset(client):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((8, 4), dtype=np.float32)
    b = rng.standard_normal((8, 4), dtype=np.float32)
    result = client.infer("add_sub", add_sub_inputs(a, b))
    np.testing.assert_array_equal(result.as_numpy("sum"), a + b)
    np.testing.assert_array_equal(result.as_numpy("diff"), a - b)
    assert result.get_output("sum")["parameters"]["binary_data_size"] == 8 * 4 * 4

    # Only the output asked for comes back, JSON and binary mixed.
    result = client.infer("add_sub", add_sub_inputs(a, b, binary=False),
                          outputs=[httpclient.InferRequestedOutput("diff")])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["diff"]
    assert result.as_numpy("sum") is None
    np.testing.assert_array_equal(result.as_numpy("diff"), a - b)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_request_and_response(client, algorithm):
    a = np.full((2, 4), 1.5, dtype=np.float32)
    b = np.arange(8, dtype=np.float32).reshape(2, 4)
    result = client.infer("add_sub", add_sub_inputs(a, b),
                          request_compression_algorithm=algorithm,
                          response_compression_algorithm=algorithm)
    np.testing.assert_array_equal(result.as_numpy("sum"), a + b)


def datatype_values(name: str, rng) -> np.ndarray:
    _, dtype = DATATYPES[name]
    if name == "BOOL":
        return rng.integers(0, 2, (2, 3)).astype(np.bool_)
    if name == "BF16":
        # float32 values that bfloat16 holds exactly.
        return (rng.standard_normal((2, 3)) * 100).astype(ml_dtypes.bfloat16).astype(np.float32)
    if name in ("FP16", "FP32", "FP64"):
        return (rng.standard_normal((2, 3)) * 100).astype(dtype)
    info = np.iinfo(dtype)
    values = rng.integers(info.min, info.max, (2, 3), dtype=dtype, endpoint=True)
    values[0, 0], values[1, 2] = info.min, info.max
    return values


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_every_datatype_round_trips(client, binary):
    rng = np.random.default_rng(2)
    inputs, expected, outputs = [], {}, []
    for name in DATATYPES:
        value = datatype_values(name, rng)
        tensor = httpclient.InferInput(f"in_{name}", [2, 3], name)
        # BF16 travels only as binary data over HTTP.
        tensor.set_data_from_numpy(value, binary_data=binary or name == "BF16")
        inputs.append(tensor)
        expected[f"out_{name}"] = value
        outputs.append(httpclient.InferRequestedOutput(f"out_{name}", binary_data=binary or name == "BF16"))
    result = client.infer("identity_types", inputs, outputs=outputs)
    for output, want in expected.items():
        got = result.as_numpy(output)
        assert got.dtype == want.dtype, f"{output}: {got.dtype} != {want.dtype}"
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want, err_msg=output)


def test_non_batching_model(client):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    tensor = httpclient.InferInput("x", [2, 3], "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer("fixed_matmul", [tensor])
    weight = np.array([1, 2, 3, 4, 5, 6], dtype=np.float32).reshape(3, 2)
    np.testing.assert_allclose(result.as_numpy("y"), x @ weight, rtol=1e-6)


def test_simple_cnn_matches_onnxruntime(client, model_repo, ort_reference):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 32, 32), dtype=np.float32)
    tensor = httpclient.InferInput("input", [2, 3, 32, 32], "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer("simple_cnn", [tensor])
    want = ort_reference.run(model_repo / "simple_cnn" / "1" / "model.onnx", {"input": x})
    got = result.as_numpy("probabilities")
    assert got.shape == (2, 10)
    np.testing.assert_allclose(got, want["probabilities"], rtol=1e-4, atol=1e-5)


def test_version_policy_serves_latest_two(client):
    meta = client.get_model_metadata("versioned")
    assert meta["versions"] == ["2", "3"]
    a = np.ones((1, 4), dtype=np.float32)
    for version in ("2", "3"):
        result = client.infer("versioned", add_sub_inputs(a, a), model_version=version)
        assert result.get_response()["model_version"] == version
    with pytest.raises(InferenceServerException) as e:
        client.infer("versioned", add_sub_inputs(a, a), model_version="1")
    assert_error(e, 404, "version 1")
    assert client.infer("versioned", add_sub_inputs(a, a)).get_response()["model_version"] == "3"


def test_raw_binary_request_without_json_header(client):
    # Inference-Header-Content-Length: 0 — the body is the only input's bytes.
    x = np.array([-1.0, 2.0, -3.0, 4.0, 0.5], dtype=np.float32)
    response = client._post("v2/models/vector_relu/infer", x.tobytes(),
                            {"Inference-Header-Content-Length": "0"}, None)
    assert response.status_code == 200, response.read()
    header_length = int(response.get("Inference-Header-Content-Length"))
    result = httpclient.InferResult.from_response_body(response.read(), header_length=header_length)
    np.testing.assert_array_equal(result.as_numpy("y"), np.maximum(x, 0))


# --------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------


def test_statistics(client):
    before = client.get_inference_statistics("stats_model")["model_stats"][0]
    a = np.ones((2, 4), dtype=np.float32)
    for _ in range(3):
        client.infer("stats_model", add_sub_inputs(a, a))
    with pytest.raises(InferenceServerException):
        client.infer("stats_model", add_sub_inputs(a, a[:, :3]))
    after = client.get_inference_statistics("stats_model")["model_stats"][0]
    assert after["name"] == "stats_model" and after["version"] == "1"
    assert after["inference_count"] - before["inference_count"] == 6
    assert after["execution_count"] - before["execution_count"] == 3
    stats, old = after["inference_stats"], before["inference_stats"]
    assert stats["success"]["count"] - old["success"]["count"] == 3
    assert stats["success"]["ns"] > old["success"]["ns"]
    assert stats["fail"]["count"] - old["fail"]["count"] == 1
    for stage in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert stats[stage]["count"] - old[stage]["count"] == 3, stage
    batch = {b["batch_size"]: b for b in after["batch_stats"]}
    assert batch[2]["compute_infer"]["count"] >= 3
    assert after["last_inference"] > 0

    every = client.get_inference_statistics()["model_stats"]
    assert {"add_sub", "stats_model", "identity_types"} <= {s["name"] for s in every}
    one = client.get_inference_statistics("stats_model", "1")["model_stats"]
    assert len(one) == 1
    with pytest.raises(InferenceServerException) as e:
        client.get_inference_statistics("no_such_model")
    assert_error(e, 404)


# --------------------------------------------------------------------------
# Repository: index, load, unload
# --------------------------------------------------------------------------


def index_by_name(client) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for row in client.get_model_repository_index():
        rows.setdefault(row["name"], []).append(row)
    return rows


def test_repository_index_reports_unavailable_models_with_reasons(client):
    rows = index_by_name(client)
    assert rows["add_sub"] == [{"name": "add_sub", "version": "1", "state": "READY"}]
    assert [r["version"] for r in rows["versioned"]] == ["2", "3"]
    python = rows["python_model"][0]
    assert python["state"] == "UNAVAILABLE"
    assert "'python' is not supported" in python["reason"]
    broken = rows["broken_config"][0]
    assert broken["state"] == "UNAVAILABLE"
    assert "config.pbtxt" in broken["reason"] and "line 3" in broken["reason"]
    assert "nme" in broken["reason"]
    wrong = rows["wrong_dtype"][0]
    assert wrong["state"] == "UNAVAILABLE"
    assert "input[0].data_type" in wrong["reason"] and "TYPE_INT32" in wrong["reason"]
    assert "wrong_dtype" in wrong["reason"]


def test_load_and_unload(client):
    a = np.ones((1, 4), dtype=np.float32)
    assert client.is_model_ready("reloadable")
    client.unload_model("reloadable")
    assert not client.is_model_ready("reloadable")
    row = index_by_name(client)["reloadable"][0]
    assert row["state"] == "UNAVAILABLE" and row["reason"] == "unloaded"
    with pytest.raises(InferenceServerException) as e:
        client.infer("reloadable", add_sub_inputs(a, a))
    assert_error(e, 503, "reloadable")

    client.load_model("reloadable")
    assert client.is_model_ready("reloadable")
    np.testing.assert_array_equal(client.infer("reloadable", add_sub_inputs(a, a)).as_numpy("sum"), a + a)

    # Reload with a configuration override.
    config = client.get_model_config("reloadable")
    config["max_batch_size"] = 2
    client.load_model("reloadable", config=json.dumps(config))
    assert client.get_model_config("reloadable")["max_batch_size"] == 2
    big = np.ones((3, 4), dtype=np.float32)
    with pytest.raises(InferenceServerException) as e:
        client.infer("reloadable", add_sub_inputs(big, big))
    assert_error(e, 400, "batch-size must be <= 2")
    client.load_model("reloadable")
    assert client.get_model_config("reloadable")["max_batch_size"] == 8
    assert_still_serving(client)


def test_load_with_file_contents(client):
    config = {"name": "uploaded", "backend": "onnxruntime", "max_batch_size": 0,
              "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [-1]}],
              "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [-1]}]}
    client.load_model("uploaded", config=json.dumps(config),
                      files={"file:1/model.onnx": vector_relu_model().SerializeToString()})
    assert client.is_model_ready("uploaded")
    x = np.array([-2.0, 3.0], dtype=np.float32)
    tensor = httpclient.InferInput("x", [2], "FP32")
    tensor.set_data_from_numpy(x)
    np.testing.assert_array_equal(client.infer("uploaded", [tensor]).as_numpy("y"), [0.0, 3.0])
    client.unload_model("uploaded")
    assert not client.is_model_ready("uploaded")


def test_load_errors(client):
    with pytest.raises(InferenceServerException) as e:
        client.load_model("no_such_model")
    assert_error(e, 400, "no_such_model")
    with pytest.raises(InferenceServerException) as e:
        client.load_model("python_model")
    assert_error(e, 400, "python")
    with pytest.raises(InferenceServerException) as e:
        client.load_model("add_sub", config='{"max_batch_size": "many"}')
    assert_error(e, 400, "add_sub")
    # A failed reload leaves the serving version in place.
    assert client.is_model_ready("add_sub")
    assert_still_serving(client)


# --------------------------------------------------------------------------
# Bad requests: the right status, and the server keeps serving
# --------------------------------------------------------------------------


def test_unknown_model_and_version(client):
    a = np.ones((1, 4), dtype=np.float32)
    with pytest.raises(InferenceServerException) as e:
        client.infer("no_such_model", add_sub_inputs(a, a))
    assert_error(e, 404, "no_such_model")
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("no_such_model")
    assert_error(e, 404, "Request for unknown model: 'no_such_model' is not found")
    with pytest.raises(InferenceServerException) as e:
        client.infer("add_sub", add_sub_inputs(a, a), model_version="9")
    assert_error(e, 404, "version 9")
    with pytest.raises(InferenceServerException) as e:
        client.infer("python_model", add_sub_inputs(a, a))
    assert_error(e, 503, "python_model")
    assert_still_serving(client)


def test_missing_and_extra_inputs(client):
    a = np.ones((1, 4), dtype=np.float32)
    with pytest.raises(InferenceServerException) as e:
        client.infer("add_sub", add_sub_inputs(a, a)[:1])
    assert_error(e, 400, "expected 2 inputs but got 1", "missing required input(s) ['b']")
    extra = httpclient.InferInput("c", [1, 4], "FP32")
    extra.set_data_from_numpy(a)
    with pytest.raises(InferenceServerException) as e:
        client.infer("add_sub", add_sub_inputs(a, a) + [extra])
    assert_error(e, 400, "unexpected inference input 'c'")
    with pytest.raises(InferenceServerException) as e:
        client.infer("add_sub", add_sub_inputs(a, a), outputs=[httpclient.InferRequestedOutput("nope")])
    assert_error(e, 400, "unexpected inference output 'nope'")
    assert_still_serving(client)


def test_wrong_datatype_and_shape(client):
    a = np.ones((1, 4), dtype=np.float32)
    wrong = httpclient.InferInput("a", [1, 4], "INT32")
    wrong.set_data_from_numpy(a.astype(np.int32))
    with pytest.raises(InferenceServerException) as e:
        client.infer("add_sub", [wrong, add_sub_inputs(a, a)[1]])
    assert_error(e, 400, "inference input 'a' data-type is 'INT32', but model 'add_sub' expects 'FP32'")
    text = httpclient.InferInput("a", [1, 4], "BYTES")
    text.set_data_from_numpy(np.array([[b"w", b"x", b"y", b"z"]], dtype=np.object_))
    with pytest.raises(InferenceServerException) as e:
        client.infer("add_sub", [text, add_sub_inputs(a, a)[1]])
    assert_error(e, 400, "BYTES")
    b = np.ones((1, 5), dtype=np.float32)
    with pytest.raises(InferenceServerException) as e:
        client.infer("add_sub", add_sub_inputs(b, b))
    assert_error(e, 400, "unexpected shape for input 'a'", "Expected [-1,4], got [1,5]")
    big = np.ones((9, 4), dtype=np.float32)
    with pytest.raises(InferenceServerException) as e:
        client.infer("add_sub", add_sub_inputs(big, big))
    assert_error(e, 400, "batch-size must be <= 8")
    with pytest.raises(InferenceServerException) as e:
        client.infer("add_sub", add_sub_inputs(a, np.ones((2, 4), dtype=np.float32)))
    assert_error(e, 400, "batch size")
    assert_still_serving(client)


def test_bad_json(client):
    response = client._post("v2/models/add_sub/infer", b'{"inputs": [ {"name": }', {}, None)
    # Triton answers a JSON parse failure with 500.
    assert response.status_code == 500
    assert "failed to parse the request JSON buffer" in json.loads(response.read())["error"]
    response = client._post("v2/models/add_sub/infer", b'{"outputs": []}', {}, None)
    assert response.status_code == 400
    assert "'inputs'" in json.loads(response.read())["error"]
    response = client._post("v2/models/add_sub/infer", b'{"inputs": [1]}', {}, None)
    assert response.status_code == 400
    assert_still_serving(client)


def test_body_larger_than_the_limit(client):
    big = np.ones(MAX_INPUT_SIZE // 4 + 1000, dtype=np.float32)
    tensor = httpclient.InferInput("x", list(big.shape), "FP32")
    tensor.set_data_from_numpy(big)
    with pytest.raises(InferenceServerException) as e:
        client.infer("vector_relu", [tensor])
    assert_error(e, 400, "--http-max-input-size")
    # A gzip body that inflates past the limit is refused too.
    bomb = gzip.compress(b"0" * (MAX_INPUT_SIZE * 2))
    response = client._post("v2/models/vector_relu/infer", bomb, {"Content-Encoding": "gzip"}, None)
    assert response.status_code == 400
    assert "--http-max-input-size" in json.loads(response.read())["error"]
    # Just under the limit works.
    fits = np.full(MAX_INPUT_SIZE // 4 - 1000, -1.0, dtype=np.float32)
    tensor = httpclient.InferInput("x", list(fits.shape), "FP32")
    tensor.set_data_from_numpy(fits)
    assert client.infer("vector_relu", [tensor]).as_numpy("y").max() == 0.0
    assert_still_serving(client)


def test_binary_size_mismatch(client):
    a = np.ones((1, 4), dtype=np.float32)
    # The client sends 16 bytes but declares shape [1, 3] (12 bytes).
    inputs = add_sub_inputs(a, a)
    inputs[0].set_shape([1, 3])
    with pytest.raises(InferenceServerException) as e:
        client.infer("add_sub", inputs)
    assert_error(e, 400, "input 'a'", "needs 12 bytes", "holds 16")
    # binary_data_size larger than the body.
    inputs = add_sub_inputs(a, a)
    inputs[1]._parameters["binary_data_size"] = 64
    with pytest.raises(InferenceServerException) as e:
        client.infer("add_sub", inputs)
    assert_error(e, 400, "binary_data_size is 64")
    # Bytes left over that no input claims.
    response = client._post("v2/models/add_sub/infer", b'{"inputs": []}' + b"xyz",
                            {"Inference-Header-Content-Length": "14"}, None)
    assert response.status_code == 400
    assert "no input's binary_data_size" in json.loads(response.read())["error"]
    # A header length past the end of the body.
    response = client._post("v2/models/add_sub/infer", b"{}", {"Inference-Header-Content-Length": "99"}, None)
    assert response.status_code == 400
    assert_still_serving(client)


def test_bytes_inputs_are_parsed_and_checked(client):
    a = np.ones((1, 4), dtype=np.float32)
    # Well-formed BYTES (4-byte little-endian length before each element) reach
    # the model's datatype check.
    text = httpclient.InferInput("a", [1, 4], "BYTES")
    text.set_data_from_numpy(np.array([[b"w", b"xy", b"", "z\u00e9".encode()]], dtype=np.object_))
    with pytest.raises(InferenceServerException) as e:
        client.infer("add_sub", [text, add_sub_inputs(a, a)[1]])
    assert_error(e, 400, "data-type is 'BYTES'")
    # A length prefix that claims more bytes than follow.
    header = json.dumps({"inputs": [{"name": "a", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": 6}}]}).encode()
    body = header + (9).to_bytes(4, "little") + b"ab"
    response = client._post("v2/models/add_sub/infer", body,
                            {"Inference-Header-Content-Length": str(len(header))}, None)
    assert response.status_code == 400
    assert "claims 9 bytes" in json.loads(response.read())["error"]
    # JSON BYTES elements must be strings.
    response = client._post("v2/models/add_sub/infer", json.dumps(
        {"inputs": [{"name": "a", "datatype": "BYTES", "shape": [2], "data": ["x", 3]}]}).encode(), {}, None)
    assert response.status_code == 400
    assert "element 1" in json.loads(response.read())["error"]
    assert_still_serving(client)


def test_unknown_route_is_a_json_404(client):
    response = client._get("v2/no/such/endpoint", {}, None)
    assert response.status_code == 404
    assert "error" in json.loads(response.read())


# --------------------------------------------------------------------------
# Other modes, one short-lived server each
# --------------------------------------------------------------------------


def test_none_mode_and_strict_config(smelt_bin, tmp_path):
    repo = tmp_path / "repo"
    write_model(repo, "configured", add_sub_model(), ADD_SUB_CONFIG.format(name="configured"))
    write_model(repo, "bare", add_sub_model(), None)
    srv = SmeltServer(smelt_bin, repo, tmp_path / "serve.log", "--strict-model-config",
                      "--model-control-mode", "none")
    try:
        srv.wait_ready()
        client = srv.http_client()
        assert client.is_model_ready("configured")
        # Strict: no config.pbtxt means no model.
        assert not client.is_model_ready("bare")
        rows = {r["name"]: r for r in client.get_model_repository_index()}
        assert rows["bare"]["state"] == "UNAVAILABLE"
        assert "--strict-model-config" in rows["bare"]["reason"]
        # Loading and unloading need explicit mode.
        with pytest.raises(InferenceServerException) as e:
            client.load_model("bare")
        assert_error(e, 503, "explicit")
        with pytest.raises(InferenceServerException) as e:
            client.unload_model("configured")
        assert_error(e, 503, "explicit")
        assert client.is_model_ready("configured")
    finally:
        code = srv.stop(signal.SIGINT)
    log = srv.log_path.read_text()
    assert code == 0, log
    assert "SIGINT received" in log
    assert PANIC_MARKER not in log


def test_missing_repository_fails_at_startup(smelt_bin, tmp_path):
    srv = SmeltServer(smelt_bin, tmp_path / "does-not-exist", tmp_path / "serve.log")
    try:
        code = srv.process.wait(timeout=60)
    finally:
        srv.stop()
    log = srv.log_path.read_text()
    assert code != 0
    assert "does-not-exist" in log
    assert PANIC_MARKER not in log


def test_serve_help_documents_the_flags(smelt_bin):
    done = subprocess.run([str(smelt_bin), "serve", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0
    for flag in ("--model-repository", "--http-port", "--grpc-port", "--metrics-port",
                 "--http-address", "--grpc-address", "--model-control-mode",
                 "--repository-poll-secs", "--load-model", "--strict-model-config",
                 "--exit-timeout-secs", "--log-verbose", "--http-max-input-size",
                 "--allow-http", "--allow-grpc", "--allow-metrics"):
        assert flag in done.stdout, flag


# --------------------------------------------------------------------------
# Logging settings
# --------------------------------------------------------------------------


def test_logging_settings(server, client):
    settings = client.get_log_settings()
    assert settings == {"log_file": "", "log_info": True, "log_warning": True, "log_error": True,
                        "log_verbose_level": 0, "log_format": "default"}
    try:
        # Verbose level 1 logs each request; 0 does not.
        updated = client.update_log_settings({"log_verbose_level": 1, "log_format": "ISO8601"})
        assert updated["log_verbose_level"] == 1 and updated["log_format"] == "ISO8601"
        client.get_model_metadata("add_sub", "1")
        client.update_log_settings({"log_verbose_level": 0})
        client.get_model_config("add_sub", "1")
        log = server.log()
        assert "HTTP request: GET /v2/models/add_sub/versions/1" in log
        assert "HTTP request: GET /v2/models/add_sub/versions/1/config" not in log
        # ISO 8601 stamps while that format was set.
        line = next(l for l in log.splitlines() if "HTTP request: GET /v2/models/add_sub/versions/1" in l)
        assert re.match(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", line), line
        # Levels switch independently; null leaves a setting alone.
        updated = client.update_log_settings({"log_info": False, "log_warning": None})
        assert updated["log_info"] is False and updated["log_warning"] is True
        assert client.get_log_settings() == updated
    finally:
        client.update_log_settings({"log_info": True, "log_verbose_level": 0, "log_format": "default"})

    # Bad settings: 400, as Triton answers, and nothing changes.
    before = client.get_log_settings()
    for settings, mention in (({"log_file": "/tmp/smelt.log"}, "log file location can not be updated"),
                              ({"log_info": "yes"}, "log_info"),
                              ({"log_verbose_level": -1}, "log_verbose_level"),
                              ({"log_format": "xml"}, "--log_format")):
        with pytest.raises(InferenceServerException) as e:
            client.update_log_settings(settings)
        assert_error(e, 400, mention)
    assert client.get_log_settings() == before
    response = client._post("v2/logging", b"{not json", {}, None)
    assert response.status_code == 400
    assert_still_serving(client)


# --------------------------------------------------------------------------
# The same requests as real Triton, compared with its recorded answers
# --------------------------------------------------------------------------


def golden(name: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body Triton answered for `name`."""
    lines = (GOLDEN / f"{name}.hdr").read_text().splitlines()
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    return status, headers, (GOLDEN / f"{name}.body").read_bytes()


def ask(server, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def same_shape(ours, theirs, where: str = "body") -> None:
    """The same JSON structure: keys, nesting and value types (not values)."""
    assert type(ours) is type(theirs) or {type(ours), type(theirs)} <= {int, float}, \
        f"{where}: {ours!r} vs Triton's {theirs!r}"
    if isinstance(theirs, dict):
        assert sorted(ours) == sorted(theirs), f"{where}: keys {sorted(ours)} vs Triton's {sorted(theirs)}"
        for key in theirs:
            same_shape(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, list) and theirs and ours:
        same_shape(ours[0], theirs[0], f"{where}[0]")


def check_like_triton(name: str, ours: tuple[int, dict[str, str], bytes], exact: bool = False) -> None:
    status, headers, body = ours
    want_status, want_headers, want_body = golden(name)
    assert status == want_status, f"{name}: status {status}, Triton {want_status}: {body!r}"
    assert headers.get("content-type") == want_headers.get("content-type"), (name, headers)
    assert int(headers["content-length"]) == len(body)
    if "inference-header-content-length" in want_headers:
        length = int(headers["inference-header-content-length"])
        want_length = int(want_headers["inference-header-content-length"])
        assert json.loads(body[:length]) == json.loads(want_body[:want_length]), name
        assert body[length:] == want_body[want_length:], name
    elif not want_body:
        assert body == b"", name
    elif exact:
        assert json.loads(body) == json.loads(want_body), name
    else:
        same_shape(json.loads(body), json.loads(want_body), name)


def test_answers_match_triton(server, client):
    for path, name in (("/v2/health/live", "_v2_health_live"), ("/v2/health/ready", "_v2_health_ready"),
                       ("/v2/models/add/ready", "_v2_models_add_ready")):
        check_like_triton(name, ask(server, "GET", path))
    check_like_triton("_v2", ask(server, "GET", "/v2"))
    # Metadata: everything as Triton's but the platform (Triton's model was Python).
    for path, name in (("/v2/models/add", "_v2_models_add"), ("/v2/models/add/versions/1", "_v2_models_add_versions_1")):
        ours = ask(server, "GET", path)
        check_like_triton(name, ours)
        theirs = json.loads(golden(name)[2])
        mine = json.loads(ours[2])
        assert mine["platform"] == "onnxruntime_onnx"
        mine.pop("platform"), theirs.pop("platform")
        assert mine == theirs
    check_like_triton("_v2_models_nope", ask(server, "GET", "/v2/models/nope"), exact=True)
    check_like_triton("_v2_models_nope_ready", ask(server, "GET", "/v2/models/nope/ready"), exact=True)

    request = json.loads((GOLDEN / "infer.req").read_text())
    check_like_triton("infer", ask(server, "POST", "/v2/models/add/infer", json.dumps(request).encode()),
                      exact=True)
    binary = {"inputs": request["inputs"], "outputs": [{"name": "sum", "parameters": {"binary_data": True}}]}
    check_like_triton("bin", ask(server, "POST", "/v2/models/add/infer", json.dumps(binary).encode()))
    missing = {"inputs": request["inputs"][:1]}
    check_like_triton("bad", ask(server, "POST", "/v2/models/add/infer", json.dumps(missing).encode()), exact=True)
    wrong = json.loads(json.dumps(request))
    del wrong["id"]
    wrong["inputs"][0]["datatype"] = "INT32"
    check_like_triton("bad2", ask(server, "POST", "/v2/models/add/infer", json.dumps(wrong).encode()), exact=True)
    ours = ask(server, "POST", "/v2/models/add/infer", b'{"inputs": [{"name": }')
    check_like_triton("bad3", ours)
    assert json.loads(ours[2])["error"].startswith("failed to parse the request JSON buffer: ")
