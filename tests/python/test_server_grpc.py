"""`smelt serve` over gRPC, driven through the real `tritonclient.grpc` package.

A module-wide server (serving.SmeltServer) runs in explicit model-control mode
on free loopback ports against a temporary repository of small models built
here with onnx.helper. The tests use the client's high-level API; where it
cannot send what a test needs (typed InferTensorContents, malformed raw
contents, the gRPC health service) they use the protobuf stubs tritonclient
ships (tritonclient.grpc.service_pb2*) or grpc itself, its own dependency.
Every bad request checks the gRPC status code and that the server still serves
afterwards; stopping the server with SIGTERM must end it cleanly.
"""

from __future__ import annotations

import json
import queue
import time
from functools import partial
from pathlib import Path

import grpc
import ml_dtypes
import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from onnx import TensorProto, helper
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from server_models import (ADD_SUB_CONFIG, DATATYPES, VECTOR_RELU_CONFIG, add_sub_model, identity_types_model,
                           vector_relu_model)
from serving import SmeltServer, write_model
from support import make_model

# The InferTensorContents field of each datatype that has one.
CONTENTS_FIELDS = {
    "BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
    "UINT32": "uint_contents", "UINT64": "uint64_contents", "INT8": "int_contents",
    "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents",
}

# Channel options that lift grpcio's own 4 MiB receive limit on the test side.
BIG_MESSAGES = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


# --------------------------------------------------------------------------
# The test repository
# --------------------------------------------------------------------------


# Loaded at startup; "later" is left for the load test.
STARTUP_MODELS = ("add_sub", "stats_model", "identity_types", "identity_typed", "vector_relu", "versioned",
                  "python_model")


@pytest.fixture(scope="module")
def model_repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("model_repository")
    for name in ("add_sub", "stats_model", "later"):
        write_model(repo, name, add_sub_model(), ADD_SUB_CONFIG.format(name=name))
    write_model(repo, "identity_types", identity_types_model(), None)
    # Only the datatypes InferTensorContents has a field for.
    write_model(repo, "identity_typed", identity_types_model(tuple(CONTENTS_FIELDS)), None)
    write_model(repo, "vector_relu", vector_relu_model(), VECTOR_RELU_CONFIG)
    # Three versions; the policy serves the latest two.
    write_model(repo, "versioned", add_sub_model(),
                ADD_SUB_CONFIG.format(name="versioned")
                + "version_policy: { latest: { num_versions: 2 } }\n", versions=(1, 2, 3))
    # UNAVAILABLE with a reason while the rest serve.
    write_model(repo, "python_model", add_sub_model(), 'backend: "python"\n')
    return repo


@pytest.fixture(scope="module")
def server(smelt_bin: Path, model_repo: Path, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "smelt-serve.log"
    load = [flag for name in STARTUP_MODELS for flag in ("--load-model", name)]
    srv = SmeltServer(smelt_bin, model_repo, log, "--threads", "2",
                      "--model-control-mode", "explicit", *load,
                      "--exit-timeout-secs", "20").wait_ready()
    yield srv
    text = srv.stop_cleanly()
    assert "gRPC endpoint listening" in text and "gRPC endpoint closed" in text, text


@pytest.fixture
def client(server: SmeltServer) -> grpcclient.InferenceServerClient:
    c = server.grpc_client()
    yield c
    c.close()


@pytest.fixture
def stub(server: SmeltServer):
    """The raw protobuf stub, for requests the high-level client cannot make."""
    channel = grpc.insecure_channel(server.grpc_url, options=BIG_MESSAGES)
    yield service_pb2_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


def assert_status(excinfo, code: str, *mentions: str) -> str:
    error = excinfo.value
    assert isinstance(error, (InferenceServerException, grpc.RpcError)), error
    if isinstance(error, grpc.RpcError):
        status, message = str(error.code()), error.details()
    else:
        status, message = error.status(), error.message()
    assert status == f"StatusCode.{code}", f"status {status}, expected {code}: {message}"
    for text in mentions:
        assert text in message, f"the error does not mention {text!r}: {message}"
    return message


def add_sub_inputs(a: np.ndarray, b: np.ndarray) -> list:
    inputs = []
    for name, value in (("a", a), ("b", b)):
        tensor = grpcclient.InferInput(name, list(value.shape), "FP32")
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    return inputs


def assert_still_serving(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    a = np.arange(4, dtype=np.float32).reshape(1, 4)
    result = client.infer("add_sub", add_sub_inputs(a, a))
    np.testing.assert_array_equal(result.as_numpy("sum"), a + a)


def raw_request(model: str, inputs: list[tuple[str, str, list[int]]], raw: list[bytes]) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=model)
    for name, datatype, shape in inputs:
        request.inputs.add(name=name, datatype=datatype, shape=shape)
    request.raw_input_contents.extend(raw)
    return request


# --------------------------------------------------------------------------
# Health and metadata
# --------------------------------------------------------------------------


def health_check(server: SmeltServer, service: str) -> int:
    """grpc.health.v1.Health/Check by hand: field 1 (service) in, field 1 (status) out."""
    encoded = service.encode()
    request = (b"\x0a" + bytes([len(encoded)]) + encoded) if encoded else b""
    with grpc.insecure_channel(server.grpc_url) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                    request_serializer=lambda b: b, response_deserializer=lambda b: b)
        answer = check(request, timeout=10)
    # SERVING = 1, NOT_SERVING = 2; an UNKNOWN (0) status encodes as nothing.
    return answer[1] if answer[:1] == b"\x08" else 0


def test_health_and_readiness(server, client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("add_sub")
    assert client.is_model_ready("add_sub", "1")
    assert not client.is_model_ready("add_sub", "7")
    assert not client.is_model_ready("no_such_model")
    assert not client.is_model_ready("python_model")
    assert not client.is_model_ready("versioned", "1")
    assert client.is_model_ready("versioned", "3")
    assert health_check(server, "") == 1
    assert health_check(server, "inference.GRPCInferenceService") == 1
    with pytest.raises(grpc.RpcError) as e:
        health_check(server, "no.such.Service")
    assert_status(e, "NOT_FOUND", "no.such.Service")


def test_server_metadata(server, client):
    meta = client.get_server_metadata()
    assert meta.name == "smelt"
    assert meta.version
    # The same extensions as the HTTP endpoint advertises.
    http = server.http_client()
    try:
        assert sorted(meta.extensions) == sorted(http.get_server_metadata()["extensions"])
    finally:
        http.close()
    assert "system_shared_memory" in meta.extensions


def test_model_metadata(client):
    meta = client.get_model_metadata("add_sub", as_json=True)
    assert meta["name"] == "add_sub"
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "a", "datatype": "FP32", "shape": ["-1", "4"]},
                              {"name": "b", "datatype": "FP32", "shape": ["-1", "4"]}]
    assert [o["name"] for o in meta["outputs"]] == ["sum", "diff"]
    meta = client.get_model_metadata("versioned")
    assert list(meta.versions) == ["2", "3"]
    meta = client.get_model_metadata("identity_types")
    assert {i.name: i.datatype for i in meta.inputs} == {f"in_{t}": t for t in DATATYPES}
    assert all(list(i.shape) == [-1, 3] for i in meta.inputs)


def test_model_config(client):
    config = client.get_model_config("add_sub").config
    assert config.name == "add_sub"
    assert config.max_batch_size == 8
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("a", model_config_pb2.TYPE_FP32, [4]), ("b", model_config_pb2.TYPE_FP32, [4])]
    assert config.instance_group[0].count == 2
    # Completed from the model file when config.pbtxt is absent.
    config = client.get_model_config("identity_types", as_json=True)["config"]
    assert config["max_batch_size"] > 0
    assert len(config["input"]) == len(DATATYPES)
    with pytest.raises(InferenceServerException) as e:
        client.get_model_config("no_such_model")
    assert_status(e, "NOT_FOUND", "no_such_model")


# --------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------


def test_infer_with_output_subset_and_id(client):
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.full((2, 4), 0.5, dtype=np.float32)
    result = client.infer("add_sub", add_sub_inputs(a, b), request_id="req-1",
                          outputs=[grpcclient.InferRequestedOutput("diff")])
    response = result.get_response()
    assert response.id == "req-1"
    assert response.model_name == "add_sub" and response.model_version == "1"
    assert [o.name for o in response.outputs] == ["diff"]
    np.testing.assert_array_equal(result.as_numpy("diff"), a - b)
    assert result.as_numpy("sum") is None
    # Every output, in configuration order, without a requested list.
    result = client.infer("add_sub", add_sub_inputs(a, b))
    assert [o.name for o in result.get_response().outputs] == ["sum", "diff"]
    np.testing.assert_array_equal(result.as_numpy("sum"), a + b)
    assert list(result.get_output("sum").shape) == [2, 4]


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_messages(client, algorithm):
    a = np.arange(4, dtype=np.float32).reshape(1, 4)
    result = client.infer("add_sub", add_sub_inputs(a, a), compression_algorithm=algorithm)
    np.testing.assert_array_equal(result.as_numpy("sum"), a + a)


def test_every_datatype_round_trips(client):
    inputs, outputs, expected = [], [], {}
    rng = np.random.default_rng(7)
    for name, (_, dtype) in DATATYPES.items():
        if name == "BOOL":
            value = np.array([[True, False, True], [False, False, True]])
        elif name == "BF16":
            value = np.array([[0.5, -2.0, 1.5], [256.0, -0.25, 3.0]], dtype=np.float32)
            assert np.array_equal(value.astype(ml_dtypes.bfloat16).astype(np.float32), value)
        elif np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            value = np.array([[info.min, info.max, 0], [1, 2, 3]], dtype=dtype)
        else:
            value = rng.standard_normal((2, 3)).astype(dtype)
        tensor = grpcclient.InferInput(f"in_{name}", [2, 3], name)
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
        outputs.append(grpcclient.InferRequestedOutput(f"out_{name}"))
        expected[name] = value
    result = client.infer("identity_types", inputs, outputs=outputs)
    for name, value in expected.items():
        out = result.get_output(f"out_{name}")
        assert out.datatype == name and list(out.shape) == [2, 3], out
        np.testing.assert_array_equal(result.as_numpy(f"out_{name}"), value, err_msg=name)


def test_typed_contents(stub):
    """Inputs as InferTensorContents (each datatype's own field) instead of raw bytes."""
    request = service_pb2.ModelInferRequest(model_name="identity_typed", id="typed")
    values = {}
    for name, field in CONTENTS_FIELDS.items():
        dtype = DATATYPES[name][1]
        if name == "BOOL":
            value = np.array([[True, False, True]])
        elif np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            value = np.array([[info.min, info.max, 7]], dtype=dtype)
        else:
            value = np.array([[0.5, -1.25, 3.0]], dtype=dtype)
        tensor = request.inputs.add(name=f"in_{name}", datatype=name, shape=[1, 3])
        getattr(tensor.contents, field).extend(value.flatten().tolist())
        request.outputs.add(name=f"out_{name}")
        values[name] = value
    response = stub.ModelInfer(request, timeout=30)
    assert response.id == "typed"
    assert [o.name for o in response.outputs] == [f"out_{n}" for n in CONTENTS_FIELDS]
    for output, raw in zip(response.outputs, response.raw_output_contents):
        name = output.datatype
        got = np.frombuffer(raw, dtype=DATATYPES[name][1]).reshape(list(output.shape))
        np.testing.assert_array_equal(got, values[name], err_msg=name)

    # FP16 has no contents field; a value of the wrong field or count is refused.
    bad = service_pb2.ModelInferRequest(model_name="identity_types")
    bad.inputs.add(name="in_FP16", datatype="FP16", shape=[1, 1]).contents.fp32_contents.append(1.0)
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(bad, timeout=30)
    assert_status(e, "INVALID_ARGUMENT", "in_FP16", "raw_input_contents")
    bad = service_pb2.ModelInferRequest(model_name="identity_types")
    bad.inputs.add(name="in_INT8", datatype="INT8", shape=[1, 2]).contents.int_contents.extend([1, 300])
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(bad, timeout=30)
    assert_status(e, "INVALID_ARGUMENT", "in_INT8", "300")
    bad = service_pb2.ModelInferRequest(model_name="identity_types")
    bad.inputs.add(name="in_FP32", datatype="FP32", shape=[1, 3]).contents.fp32_contents.extend([1.0, 2.0])
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(bad, timeout=30)
    assert_status(e, "INVALID_ARGUMENT", "in_FP32", "holds 3 but fp32_contents has 2")


def test_bytes_inputs_are_parsed_and_checked(client, stub):
    # Well-formed BYTES (a 4-byte little-endian length before each element) are
    # decoded and reach the model's checks, which refuse them for an FP32 input.
    text = grpcclient.InferInput("a", [1, 4], "BYTES")
    text.set_data_from_numpy(np.array([[b"w", b"xy", b"", b"z"]], dtype=np.object_))
    b = grpcclient.InferInput("b", [1, 4], "FP32")
    b.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
    with pytest.raises(InferenceServerException) as e:
        client.infer("add_sub", [text, b])
    assert_status(e, "INVALID_ARGUMENT", "data-type is 'BYTES'")
    # Malformed: an element claims more bytes than follow.
    request = raw_request("add_sub", [("a", "BYTES", [1])], [(10).to_bytes(4, "little") + b"abc"])
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(request, timeout=30)
    assert_status(e, "INVALID_ARGUMENT", "'a'", "claims 10 bytes")
    # Typed BYTES contents reach the same check.
    request = service_pb2.ModelInferRequest(model_name="add_sub")
    request.inputs.add(name="a", datatype="BYTES", shape=[1, 1]).contents.bytes_contents.append(b"hello")
    request.inputs.add(name="b", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend([1.0] * 4)
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(request, timeout=30)
    assert_status(e, "INVALID_ARGUMENT", "BYTES")
    assert_still_serving(client)


def test_large_tensor_round_trip(server):
    """64 MiB each way: far past gRPC's usual 4 MiB message limit."""
    client = server.grpc_client()
    try:
        x = np.linspace(-1.0, 1.0, 16 << 20, dtype=np.float32)
        tensor = grpcclient.InferInput("x", [x.size], "FP32")
        tensor.set_data_from_numpy(x)
        start = time.monotonic()
        result = client.infer("vector_relu", [tensor], client_timeout=120)
        elapsed = time.monotonic() - start
        y = result.as_numpy("y")
        assert y.nbytes == 64 << 20
        np.testing.assert_array_equal(y, np.maximum(x, 0))
        print(f"64 MiB FP32 relu round trip over gRPC: {elapsed:.2f} s")
    finally:
        client.close()


# --------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------


def test_stream_answers_every_request_including_bad_ones(client):
    answers: queue.Queue = queue.Queue()

    def callback(result, error):
        answers.put((result, error))

    client.start_stream(callback=callback)
    try:
        sent = {}
        for i in range(6):
            a = np.full((1, 4), float(i), dtype=np.float32)
            if i == 3:
                # Wrong shape: answered with an error; the stream goes on.
                client.async_stream_infer("add_sub", add_sub_inputs(a, a[:, :3]), request_id="bad")
                continue
            client.async_stream_infer("add_sub", add_sub_inputs(a, a), request_id=f"ok-{i}")
            sent[f"ok-{i}"] = a + a
        got, errors = {}, []
        for _ in range(6):
            result, error = answers.get(timeout=30)
            if error is not None:
                errors.append(error)
            else:
                got[result.get_response().id] = result.as_numpy("sum")
        assert len(errors) == 1, errors
        assert "unexpected shape for input 'b'" in errors[0].message(), errors[0]
        assert set(got) == set(sent)
        for request_id, expected in sent.items():
            np.testing.assert_array_equal(got[request_id], expected)
        # An unknown model is answered on the stream too.
        client.async_stream_infer("no_such_model", add_sub_inputs(a, a), request_id="lost")
        result, error = answers.get(timeout=30)
        assert result is None and "no_such_model" in error.message()
        # And the stream still works after it.
        client.async_stream_infer("add_sub", add_sub_inputs(a, a), request_id="last")
        result, error = answers.get(timeout=30)
        assert error is None and result.get_response().id == "last"
    finally:
        client.stop_stream()
    assert_still_serving(client)


# --------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------


def test_statistics(client):
    def snapshot():
        return client.get_inference_statistics("stats_model", as_json=True)["model_stats"][0]

    before = snapshot()
    a = np.ones((2, 4), dtype=np.float32)
    for _ in range(3):
        client.infer("stats_model", add_sub_inputs(a, a))
    with pytest.raises(InferenceServerException):
        client.infer("stats_model", add_sub_inputs(a, a[:, :3]))
    after = snapshot()
    count = lambda stats, key: int(stats.get(key, 0))  # noqa: E731 (JSON of uint64 is a string)
    assert after["name"] == "stats_model" and after["version"] == "1"
    assert count(after, "inference_count") - count(before, "inference_count") == 6
    assert count(after, "execution_count") - count(before, "execution_count") == 3
    stats, old = after["inference_stats"], before.get("inference_stats", {})
    assert count(stats["success"], "count") - count(old.get("success", {}), "count") == 3
    assert count(stats["fail"], "count") - count(old.get("fail", {}), "count") == 1
    assert count(stats["compute_infer"], "ns") > 0
    assert {int(b["batch_size"]) for b in after["batch_stats"]} >= {2}
    assert count(after, "last_inference") > 0

    every = client.get_inference_statistics().model_stats
    assert {"add_sub", "stats_model", "identity_types"} <= {s.name for s in every}
    assert len(client.get_inference_statistics("stats_model", "1").model_stats) == 1
    with pytest.raises(InferenceServerException) as e:
        client.get_inference_statistics("no_such_model")
    assert_status(e, "NOT_FOUND", "no_such_model")


# --------------------------------------------------------------------------
# Repository: index, load, unload
# --------------------------------------------------------------------------


def index(client) -> dict[str, list]:
    rows: dict[str, list] = {}
    for row in client.get_model_repository_index().models:
        rows.setdefault(row.name, []).append(row)
    return rows


def test_repository_index_load_and_unload(client):
    rows = index(client)
    assert rows["later"][0].state == ""  # in the repository, never loaded
    assert rows["add_sub"][0].state == "READY"
    assert rows["python_model"][0].state == "UNAVAILABLE" and "python" in rows["python_model"][0].reason
    ready = {row.name for row in client.get_model_repository_index().models if row.state == "READY"}
    assert "later" not in ready and "add_sub" in ready

    a = np.ones((1, 4), dtype=np.float32)
    client.load_model("later")
    assert client.is_model_ready("later")
    np.testing.assert_array_equal(client.infer("later", add_sub_inputs(a, a)).as_numpy("sum"), a + a)
    client.unload_model("later")
    assert not client.is_model_ready("later")
    row = index(client)["later"][0]
    assert row.state == "UNAVAILABLE" and row.reason == "unloaded"
    with pytest.raises(InferenceServerException) as e:
        client.infer("later", add_sub_inputs(a, a))
    assert_status(e, "UNAVAILABLE", "later")

    # A model sent in the request: its configuration and file contents.
    config = {"name": "uploaded", "backend": "onnxruntime", "max_batch_size": 0,
              "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [-1]}],
              "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [-1]}]}
    client.load_model("uploaded", config=json.dumps(config),
                      files={"file:1/model.onnx": vector_relu_model().SerializeToString()})
    x = np.array([-2.0, 3.0], dtype=np.float32)
    tensor = grpcclient.InferInput("x", [2], "FP32")
    tensor.set_data_from_numpy(x)
    np.testing.assert_array_equal(client.infer("uploaded", [tensor]).as_numpy("y"), [0.0, 3.0])
    client.unload_model("uploaded")
    assert not client.is_model_ready("uploaded")

    with pytest.raises(InferenceServerException) as e:
        client.load_model("no_such_model")
    assert_status(e, "INVALID_ARGUMENT", "no_such_model")
    with pytest.raises(InferenceServerException) as e:
        client.load_model("add_sub", config='{"max_batch_size": "many"}')
    assert_status(e, "INVALID_ARGUMENT", "add_sub")
    assert client.is_model_ready("add_sub")
    assert_still_serving(client)


# --------------------------------------------------------------------------
# Shared memory
# --------------------------------------------------------------------------


def test_system_shared_memory(client):
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.full((2, 4), 2.0, dtype=np.float32)
    size = a.nbytes
    key = f"/smelt_grpc_test_{id(client)}"
    handle = shm.create_shared_memory_region("grpc_io", key, 3 * size)
    try:
        shm.set_shared_memory_region(handle, [a, b])
        client.register_system_shared_memory("grpc_io", key, 3 * size)
        status = client.get_system_shared_memory_status(as_json=True)["regions"]["grpc_io"]
        assert status["key"] == key and int(status["byte_size"]) == 3 * size

        inputs = []
        for i, name in enumerate(("a", "b")):
            tensor = grpcclient.InferInput(name, [2, 4], "FP32")
            tensor.set_shared_memory("grpc_io", size, offset=i * size)
            inputs.append(tensor)
        out = grpcclient.InferRequestedOutput("sum")
        out.set_shared_memory("grpc_io", size, offset=2 * size)
        diff = grpcclient.InferRequestedOutput("diff")
        result = client.infer("add_sub", inputs, outputs=[out, diff])
        # "sum" went to the region; "diff" came back in the response.
        got = shm.get_contents_as_numpy(handle, np.float32, [3, 2, 4])
        np.testing.assert_array_equal(got[2], a + b)
        np.testing.assert_array_equal(result.as_numpy("diff"), a - b)
        params = result.get_output("sum").parameters
        assert params["shared_memory_region"].string_param == "grpc_io"
        assert params["shared_memory_byte_size"].int64_param == size

        # Errors: a window past the region, an unknown region, a taken name.
        bad = grpcclient.InferInput("a", [2, 4], "FP32")
        bad.set_shared_memory("grpc_io", size, offset=3 * size)
        with pytest.raises(InferenceServerException) as e:
            client.infer("add_sub", [bad, inputs[1]])
        assert_status(e, "INVALID_ARGUMENT", "grpc_io")
        bad.set_shared_memory("no_such_region", size)
        with pytest.raises(InferenceServerException) as e:
            client.infer("add_sub", [bad, inputs[1]])
        assert_status(e, "NOT_FOUND", "no_such_region")
        with pytest.raises(InferenceServerException) as e:
            client.register_system_shared_memory("grpc_io", key, size)
        assert_status(e, "ALREADY_EXISTS", "grpc_io")
        with pytest.raises(InferenceServerException) as e:
            client.get_system_shared_memory_status("no_such_region")
        assert_status(e, "NOT_FOUND", "no_such_region")

        client.unregister_system_shared_memory("grpc_io")
        assert not client.get_system_shared_memory_status().regions
    finally:
        client.unregister_system_shared_memory()
        shm.destroy_shared_memory_region(handle)
    assert_still_serving(client)


def test_cuda_shared_memory_is_unimplemented(client):
    with pytest.raises(InferenceServerException) as e:
        client.get_cuda_shared_memory_status()
    assert_status(e, "UNIMPLEMENTED", "CUDA")
    with pytest.raises(InferenceServerException) as e:
        client.unregister_cuda_shared_memory()
    assert_status(e, "UNIMPLEMENTED", "CUDA")


# --------------------------------------------------------------------------
# Trace and log settings
# --------------------------------------------------------------------------


def test_trace_and_log_settings(client):
    trace = client.get_trace_settings(as_json=True)["settings"]
    assert trace["trace_level"]["value"] == ["OFF"]
    with pytest.raises(InferenceServerException) as e:
        client.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"]})
    assert_status(e, "UNIMPLEMENTED", "trac")

    log = client.get_log_settings(as_json=True)["settings"]
    assert log["log_info"]["bool_param"] is True
    level = log["log_verbose_level"].get("uint32_param", 0)
    changed = client.update_log_settings({"log_verbose_level": 1}, as_json=True)["settings"]
    assert changed["log_verbose_level"]["uint32_param"] == 1
    restored = client.update_log_settings({"log_verbose_level": level}, as_json=True)["settings"]
    assert restored["log_verbose_level"].get("uint32_param", 0) == level
    with pytest.raises(InferenceServerException) as e:
        client.update_log_settings({"log_format": "fancy"})
    assert_status(e, "INVALID_ARGUMENT", "fancy")


# --------------------------------------------------------------------------
# Bad requests: the right status, and the server keeps serving
# --------------------------------------------------------------------------


def test_unknown_model_and_version(client):
    a = np.ones((1, 4), dtype=np.float32)
    with pytest.raises(InferenceServerException) as e:
        client.infer("no_such_model", add_sub_inputs(a, a))
    assert_status(e, "NOT_FOUND", "Request for unknown model: 'no_such_model' is not found")
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("no_such_model")
    assert_status(e, "NOT_FOUND", "no_such_model")
    with pytest.raises(InferenceServerException) as e:
        client.infer("add_sub", add_sub_inputs(a, a), model_version="9")
    assert_status(e, "NOT_FOUND", "version 9")
    # Version 1 is on disk but the policy does not serve it.
    with pytest.raises(InferenceServerException) as e:
        client.infer("versioned", add_sub_inputs(a, a), model_version="1")
    assert_status(e, "NOT_FOUND", "'versioned' version 1")
    with pytest.raises(InferenceServerException) as e:
        client.infer("python_model", add_sub_inputs(a, a))
    assert_status(e, "UNAVAILABLE", "python_model")
    assert_still_serving(client)


def test_missing_extra_and_mistyped_inputs(client):
    a = np.ones((1, 4), dtype=np.float32)
    with pytest.raises(InferenceServerException) as e:
        client.infer("add_sub", add_sub_inputs(a, a)[:1])
    assert_status(e, "INVALID_ARGUMENT", "missing required input(s) ['b']")
    extra = grpcclient.InferInput("c", [1, 4], "FP32")
    extra.set_data_from_numpy(a)
    with pytest.raises(InferenceServerException) as e:
        client.infer("add_sub", add_sub_inputs(a, a) + [extra])
    assert_status(e, "INVALID_ARGUMENT", "unexpected inference input 'c'")
    wrong = grpcclient.InferInput("a", [1, 4], "INT32")
    wrong.set_data_from_numpy(a.astype(np.int32))
    with pytest.raises(InferenceServerException) as e:
        client.infer("add_sub", [wrong, add_sub_inputs(a, a)[1]])
    assert_status(e, "INVALID_ARGUMENT", "data-type is 'INT32', but model 'add_sub' expects 'FP32'")
    with pytest.raises(InferenceServerException) as e:
        client.infer("add_sub", add_sub_inputs(np.ones((1, 5), np.float32), np.ones((1, 5), np.float32)))
    assert_status(e, "INVALID_ARGUMENT", "unexpected shape for input 'a'")
    with pytest.raises(InferenceServerException) as e:
        client.infer("add_sub", add_sub_inputs(a, a), outputs=[grpcclient.InferRequestedOutput("nope")])
    assert_status(e, "INVALID_ARGUMENT", "unexpected inference output 'nope'")
    assert_still_serving(client)


def test_raw_contents_mismatches(client, stub):
    four = np.ones(4, dtype=np.float32).tobytes()
    # 12 bytes where [1, 4] FP32 needs 16.
    request = raw_request("add_sub", [("a", "FP32", [1, 4]), ("b", "FP32", [1, 4])], [four[:12], four])
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(request, timeout=30)
    assert_status(e, "INVALID_ARGUMENT", "input 'a'", "needs 16 bytes")
    # More raw entries than inputs, and fewer.
    request = raw_request("add_sub", [("a", "FP32", [1, 4]), ("b", "FP32", [1, 4])], [four, four, four])
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(request, timeout=30)
    assert_status(e, "INVALID_ARGUMENT", "raw_input_contents has 3 entries")
    request = raw_request("add_sub", [("a", "FP32", [1, 4]), ("b", "FP32", [1, 4])], [four])
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(request, timeout=30)
    assert_status(e, "INVALID_ARGUMENT", "input 'b' has no data")
    # Unknown datatype, negative dimension.
    request = raw_request("add_sub", [("a", "FLOAT32", [1, 4]), ("b", "FP32", [1, 4])], [four, four])
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(request, timeout=30)
    assert_status(e, "INVALID_ARGUMENT", "unknown datatype 'FLOAT32'")
    request = raw_request("add_sub", [("a", "FP32", [-1, 4]), ("b", "FP32", [1, 4])], [four, four])
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(request, timeout=30)
    assert_status(e, "INVALID_ARGUMENT", "every dimension must be >= 0")
    assert_still_serving(client)


def test_undecodable_stream_message_ends_only_that_stream(server):
    """A stream message that is not a ModelInferRequest ends its stream with
    INTERNAL (the stream cannot go on past it); the server keeps serving."""
    channel = grpc.insecure_channel(server.grpc_url, options=BIG_MESSAGES)
    try:
        stream = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer",
                                       request_serializer=lambda b: b, response_deserializer=lambda b: b)
        # Not a protobuf message: field 1 claims 100 bytes of string, 3 follow.
        answers = stream(iter([b"\x0a\x64abc"]), timeout=10)
        with pytest.raises(grpc.RpcError) as e:
            list(answers)
        assert e.value.code() == grpc.StatusCode.INTERNAL, e.value
    finally:
        channel.close()
    client = server.grpc_client()
    try:
        assert_still_serving(client)
    finally:
        client.close()


def test_grpc_can_be_turned_off(smelt_bin, model_repo, tmp_path):
    srv = SmeltServer(smelt_bin, model_repo, tmp_path / "serve.log", "--threads", "1",
                      "--model-control-mode", "explicit", "--allow-grpc", "false").wait_ready()
    try:
        client = srv.grpc_client()
        with pytest.raises(InferenceServerException):
            client.is_server_live(client_timeout=5)
        client.close()
    finally:
        text = srv.stop_cleanly()
    assert "gRPC endpoint listening" not in text


def test_http_can_be_turned_off(smelt_bin, model_repo, tmp_path):
    """--allow-http false: gRPC alone serves, nothing listens on the HTTP port."""
    srv = SmeltServer(smelt_bin, model_repo, tmp_path / "serve.log", "--threads", "1",
                      "--model-control-mode", "explicit", "--load-model", "add_sub",
                      "--allow-http", "false")
    try:
        client = srv.grpc_client()
        deadline = time.monotonic() + 60
        while True:
            assert srv.process.poll() is None, srv.log()
            try:
                if client.is_server_ready(client_timeout=5):
                    break
            except InferenceServerException:
                pass
            assert time.monotonic() < deadline, f"not ready over gRPC after 60 s:\n{srv.log()}"
            time.sleep(0.2)
        a = np.arange(8, dtype=np.float32).reshape(2, 4)
        inputs = []
        for name in ("a", "b"):
            tensor = grpcclient.InferInput(name, [2, 4], "FP32")
            tensor.set_data_from_numpy(a)
            inputs.append(tensor)
        np.testing.assert_array_equal(client.infer("add_sub", inputs).as_numpy("sum"), a + a)
        client.close()
        http = srv.http_client()
        with pytest.raises(Exception):
            http.is_server_live()
        http.close()
    finally:
        text = srv.stop_cleanly()
    assert "HTTP endpoint disabled" in text and "HTTP endpoint listening" not in text
