"""System shared memory over HTTP, driven through the real `tritonclient.http` and
`tritonclient.utils.shared_memory` packages against a running `smelt serve`.

The client puts tensors in POSIX shared-memory objects, registers windows of them
with the server, and names the regions in its requests instead of sending the
bytes; outputs are written by the server into regions and read back by the
client. Every bad request must get Triton's status code and leave the server
serving.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from onnx import TensorProto, helper
from tritonclient.utils import InferenceServerException

from server_models import add_sub_model
from serving import SmeltServer, write_model
from support import make_model

ADD_SUB_CONFIG = """
name: "add_sub"
backend: "onnxruntime"
max_batch_size: 8
input [
  { name: "a", data_type: TYPE_FP32, dims: [ 4 ] },
  { name: "b", data_type: TYPE_FP32, dims: [ 4 ] }
]
output [
  { name: "sum", data_type: TYPE_FP32, dims: [ 4 ] },
  { name: "diff", data_type: TYPE_FP32, dims: [ 4 ] }
]
"""

# Bytes of one [2, 4] FP32 tensor.
TENSOR_BYTES = 2 * 4 * 4


@pytest.fixture(scope="module")
def server(smelt_bin: Path, tmp_path_factory):
    repo = tmp_path_factory.mktemp("shm_repository")
    write_model(repo, "add_sub", add_sub_model(), ADD_SUB_CONFIG)
    log = tmp_path_factory.mktemp("shm_server") / "smelt-serve.log"
    srv = SmeltServer(smelt_bin, repo, log, "--threads", "2").wait_ready()
    yield srv
    srv.stop_cleanly()


@pytest.fixture
def client(server):
    c = server.http_client()
    yield c
    c.unregister_system_shared_memory()
    c.close()


class Regions:
    """POSIX shared-memory objects made for one test, destroyed after it."""

    def __init__(self):
        self.handles = []

    def create(self, tag: str, byte_size: int):
        key = f"/smelt_test_{os.getpid()}_{tag}"
        handle = shm.create_shared_memory_region(tag, key, byte_size)
        self.handles.append(handle)
        return handle, key

    def close(self):
        for handle in self.handles:
            shm.destroy_shared_memory_region(handle)


@pytest.fixture
def regions():
    r = Regions()
    yield r
    r.close()


def assert_error(excinfo, status: int, *mentions: str) -> str:
    error = excinfo.value
    assert isinstance(error, InferenceServerException)
    assert error.status() == str(status), f"status {error.status()}, expected {status}: {error}"
    for text in mentions:
        assert text in error.message(), f"the error does not mention {text!r}: {error.message()}"
    return error.message()


def assert_still_serving(client) -> None:
    a = np.arange(4, dtype=np.float32).reshape(1, 4)
    inputs = []
    for name in ("a", "b"):
        tensor = httpclient.InferInput(name, [1, 4], "FP32")
        tensor.set_data_from_numpy(a)
        inputs.append(tensor)
    np.testing.assert_array_equal(client.infer("add_sub", inputs).as_numpy("sum"), a + a)


def shm_input(name: str, region: str, offset: int = 0, byte_size: int = TENSOR_BYTES):
    tensor = httpclient.InferInput(name, [2, 4], "FP32")
    tensor.set_shared_memory(region, byte_size, offset)
    return tensor


def shm_output(name: str, region: str, offset: int = 0, byte_size: int = TENSOR_BYTES):
    output = httpclient.InferRequestedOutput(name)
    output.set_shared_memory(region, byte_size, offset)
    return output


def test_inputs_and_outputs_through_shared_memory(client, regions):
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.full((2, 4), 0.5, dtype=np.float32)
    # Both inputs in one object, at offsets; both outputs in another.
    in_handle, in_key = regions.create("in", 2 * TENSOR_BYTES)
    shm.set_shared_memory_region(in_handle, [a, b])
    out_handle, out_key = regions.create("out", 2 * TENSOR_BYTES)
    client.register_system_shared_memory("input_data", in_key, 2 * TENSOR_BYTES)
    client.register_system_shared_memory("output_data", out_key, 2 * TENSOR_BYTES)

    status = {r["name"]: r for r in client.get_system_shared_memory_status()}
    assert status == {
        "input_data": {"name": "input_data", "key": in_key, "offset": 0, "byte_size": 2 * TENSOR_BYTES},
        "output_data": {"name": "output_data", "key": out_key, "offset": 0, "byte_size": 2 * TENSOR_BYTES},
    }
    assert client.get_system_shared_memory_status("output_data") == [status["output_data"]]

    result = client.infer(
        "add_sub",
        [shm_input("a", "input_data"), shm_input("b", "input_data", offset=TENSOR_BYTES)],
        outputs=[shm_output("sum", "output_data"), shm_output("diff", "output_data", offset=TENSOR_BYTES)],
    )
    # The response names the regions and carries no data.
    out = result.get_output("sum")
    assert out["parameters"]["shared_memory_region"] == "output_data"
    assert out["parameters"]["shared_memory_byte_size"] == TENSOR_BYTES
    assert out["shape"] == [2, 4] and "data" not in out
    np.testing.assert_array_equal(shm.get_contents_as_numpy(out_handle, np.float32, [2, 4]), a + b)
    np.testing.assert_array_equal(
        shm.get_contents_as_numpy(out_handle, np.float32, [2, 4], offset=TENSOR_BYTES), a - b)

    # New input values in the same region are seen by the next request.
    shm.set_shared_memory_region(in_handle, [b], offset=0)
    client.infer("add_sub", [shm_input("a", "input_data"), shm_input("b", "input_data", offset=TENSOR_BYTES)],
                 outputs=[shm_output("sum", "output_data")])
    np.testing.assert_array_equal(shm.get_contents_as_numpy(out_handle, np.float32, [2, 4]), b + b)


def test_region_windows_and_mixed_sources(client, regions):
    # A region registered at an offset inside its object; offsets in requests
    # count from the region's start.
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    handle, key = regions.create("window", 100 + TENSOR_BYTES)
    shm.set_shared_memory_region(handle, [a], offset=100)
    client.register_system_shared_memory("windowed", key, TENSOR_BYTES, offset=100)
    assert client.get_system_shared_memory_status("windowed")[0]["offset"] == 100
    b = np.ones((2, 4), dtype=np.float32)
    json_b = httpclient.InferInput("b", [2, 4], "FP32")
    json_b.set_data_from_numpy(b, binary_data=False)
    # One input from shared memory, one as JSON; outputs as binary data.
    result = client.infer("add_sub", [shm_input("a", "windowed"), json_b])
    np.testing.assert_array_equal(result.as_numpy("sum"), a + b)
    np.testing.assert_array_equal(result.as_numpy("diff"), a - b)


def test_unregister_one_and_all(client, regions):
    _, key = regions.create("unreg", 64)
    for name in ("r1", "r2", "r3"):
        client.register_system_shared_memory(name, key, 32)
    client.unregister_system_shared_memory("r2")
    assert sorted(r["name"] for r in client.get_system_shared_memory_status()) == ["r1", "r3"]
    # Unregistering a name that is not registered is not an error (as Triton).
    client.unregister_system_shared_memory("never_registered")
    client.unregister_system_shared_memory()
    assert client.get_system_shared_memory_status() == []
    # An unregistered region cannot be used.
    with pytest.raises(InferenceServerException) as e:
        client.infer("add_sub", [shm_input("a", "r1"), shm_input("b", "r1")])
    assert_error(e, 404, "'r1'")
    assert_still_serving(client)


def test_registration_errors(client, regions):
    _, key = regions.create("reg", 64)
    client.register_system_shared_memory("taken", key, 64)
    with pytest.raises(InferenceServerException) as e:
        client.register_system_shared_memory("taken", key, 32)
    assert_error(e, 400, "'taken' already in manager")
    with pytest.raises(InferenceServerException) as e:
        client.register_system_shared_memory("nokey", f"/smelt_test_{os.getpid()}_missing", 64)
    assert_error(e, 400, "Unable to open shared memory region")
    with pytest.raises(InferenceServerException) as e:
        client.register_system_shared_memory("toolong", key, 65)
    assert_error(e, 400, "'toolong'", "64 bytes")
    with pytest.raises(InferenceServerException) as e:
        client.register_system_shared_memory("pastend", key, 8, offset=60)
    assert_error(e, 400, "'pastend'")
    with pytest.raises(InferenceServerException) as e:
        client.get_system_shared_memory_status("nokey")
    assert_error(e, 400, "Unable to find system shared memory region: 'nokey'")
    # None of the failed registrations took.
    assert [r["name"] for r in client.get_system_shared_memory_status()] == ["taken"]
    response = client._post("v2/systemsharedmemory/region/x/register", b'{"key": "/k"}', {}, None)
    assert response.status_code == 400
    assert "byte_size" in response.read().decode()
    assert_still_serving(client)


def test_inference_errors(client, regions):
    handle, key = regions.create("errs", TENSOR_BYTES)
    shm.set_shared_memory_region(handle, [np.ones((2, 4), dtype=np.float32)])
    client.register_system_shared_memory("small", key, TENSOR_BYTES)
    good = shm_input("b", "small")
    cases = [
        # Unknown region: 404, as Triton's NOT_FOUND.
        ([shm_input("a", "nowhere"), good], None, 404, "Unable to find shared memory region: 'nowhere'"),
        # A window past the region's end.
        ([shm_input("a", "small", offset=8), good], None, 400, "Invalid offset + byte size"),
        ([shm_input("a", "small", offset=TENSOR_BYTES), good], None, 400, "Invalid offset"),
        # The window's size does not match the tensor's.
        ([shm_input("a", "small", byte_size=16), good], None, 400, "needs 32 bytes"),
        # An output window too small for the result.
        ([good, shm_input("a", "small")], [shm_output("sum", "small", byte_size=16)], 400, "at least 32 bytes"),
        # An output region that does not exist is refused before the model runs.
        ([good, shm_input("a", "small")], [shm_output("sum", "gone")], 404, "'gone'"),
    ]
    for inputs, outputs, status, mention in cases:
        with pytest.raises(InferenceServerException) as e:
            client.infer("add_sub", inputs, outputs=outputs)
        assert_error(e, status, mention)
    assert_still_serving(client)
