"""The scheduler of `smelt serve`, driven through the real `tritonclient.http`:
dynamic batching with concurrent clients, queue policies (a full queue, request
timeouts), priorities and model warmup.

A module-wide server serves small models built here with onnx.helper. The
queue tests hold requests in the queue with a long max_queue_delay_microseconds
rather than a slow model, so what they see does not depend on machine speed.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from onnx import TensorProto, helper, numpy_helper
from tritonclient.utils import InferenceServerException

from serving import SmeltServer, write_model
from support import make_model

FEATURES = 16
OUTPUTS = 8
RNG = np.random.default_rng(7)
WEIGHTS = RNG.standard_normal((FEATURES, OUTPUTS)).astype(np.float32)
BIAS = RNG.standard_normal(OUTPUTS).astype(np.float32)


def affine_model():
    """y = relu(x @ W + b) over FP32 [batch, 16] -> [batch, 8]: each row's answer
    depends only on that row, so a batch cut back wrongly shows."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", FEATURES])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", OUTPUTS])
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["z"]),
        helper.make_node("Relu", ["z"], ["y"]),
    ]
    inits = [numpy_helper.from_array(WEIGHTS, "W"), numpy_helper.from_array(BIAS, "b")]
    return make_model(nodes, [x], [y], inits)


def config(name: str, max_batch_size: int, scheduling: str = "", extra: str = "") -> str:
    return f"""
name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch_size}
input [ {{ name: "x", data_type: TYPE_FP32, dims: [ {FEATURES} ] }} ]
output [ {{ name: "y", data_type: TYPE_FP32, dims: [ {OUTPUTS} ] }} ]
{scheduling}
{extra}
"""


# Batches whatever arrives within 300 ms, up to 8 rows.
BATCHED = "dynamic_batching { max_queue_delay_microseconds: 300000 }"
# Holds requests 1.5 s waiting for a batch of 8 that never comes; at most 2 wait.
SMALL_QUEUE = """dynamic_batching {
  max_queue_delay_microseconds: 1500000
  default_queue_policy { max_queue_size: 2 }
}"""
# Holds requests 2 s; a request may ask for a shorter queue timeout.
TIMEOUTS = """dynamic_batching {
  max_queue_delay_microseconds: 2000000
  default_queue_policy { allow_timeout_override: true }
}"""
# Requests time out after 100 ms in the queue; the DELAY action runs them anyway.
DELAYED = """dynamic_batching {
  max_queue_delay_microseconds: 400000
  default_queue_policy { default_timeout_microseconds: 100000, timeout_action: DELAY }
}"""
WARMUP = """model_warmup [
  { name: "zeros", batch_size: 2, count: 3,
    inputs { key: "x" value: { data_type: TYPE_FP32, dims: [ 16 ], zero_data: true } } },
  { name: "random", batch_size: 1,
    inputs { key: "x" value: { data_type: TYPE_FP32, dims: [ 16 ], random_data: true } } },
  { name: "from_file", batch_size: 4,
    inputs { key: "x" value: { data_type: TYPE_FP32, dims: [ 16 ], input_data_file: "row.bin" } } }
]"""
BAD_WARMUP = """model_warmup [
  { name: "wrong_dims", batch_size: 1,
    inputs { key: "x" value: { data_type: TYPE_FP32, dims: [ 5 ], zero_data: true } } }
]"""


@pytest.fixture(scope="module")
def model_repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("batching_repository")
    model = affine_model()
    write_model(repo, "batched", model, config("batched", 8, BATCHED))
    write_model(repo, "unbatched", model, config("unbatched", 8))
    write_model(repo, "small_queue", model, config("small_queue", 8, SMALL_QUEUE))
    write_model(repo, "timeouts", model, config("timeouts", 8, TIMEOUTS))
    write_model(repo, "delayed", model, config("delayed", 8, DELAYED))
    write_model(repo, "two_instances", model,
                config("two_instances", 8, extra="instance_group [ { kind: KIND_CPU, count: 2 } ]"))
    folder = write_model(repo, "warmed", model, config("warmed", 8, extra=WARMUP))
    (folder / "warmup").mkdir()
    (folder / "warmup" / "row.bin").write_bytes(np.arange(FEATURES, dtype=np.float32).tobytes())
    write_model(repo, "bad_warmup", model, config("bad_warmup", 8, extra=BAD_WARMUP))
    write_model(repo, "gpu_group", model,
                config("gpu_group", 8, extra="instance_group [ { kind: KIND_GPU, gpus: [ 0, 1 ], count: 1 } ]"))
    return repo


@pytest.fixture(scope="module")
def server(smelt_bin: Path, model_repo: Path, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "smelt-serve.log"
    srv = SmeltServer(smelt_bin, model_repo, log, "--threads", "2", "--exit-timeout-secs", "20").wait_ready()
    yield srv
    srv.stop_cleanly()


@pytest.fixture
def client(server: SmeltServer):
    c = server.http_client()
    yield c
    c.close()


def infer_concurrently(server: SmeltServer, model: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Sends each input from its own thread and client at once; the answers in order."""
    def one(rows):
        c = server.http_client()
        try:
            return c.infer(model, request_for(rows)).as_numpy("y")
        finally:
            c.close()

    with ThreadPoolExecutor(len(inputs)) as pool:
        return list(pool.map(one, inputs))


def request_for(rows: np.ndarray) -> list:
    x = httpclient.InferInput("x", list(rows.shape), "FP32")
    x.set_data_from_numpy(rows, binary_data=True)
    return [x]


def statistics(client, model: str) -> dict:
    return client.get_inference_statistics(model)["model_stats"][0]


def expected(rows: np.ndarray) -> np.ndarray:
    return np.maximum(rows @ WEIGHTS + BIAS, 0)


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server, client):
    sizes = [1, 2, 1, 3, 1, 1, 2, 1, 1, 3]
    inputs = [RNG.standard_normal((n, FEATURES)).astype(np.float32) for n in sizes]
    # The unbatched answer of each request: the same model without dynamic batching.
    alone = [client.infer("unbatched", request_for(rows)).as_numpy("y") for rows in inputs]
    before = statistics(client, "batched")
    answers = infer_concurrently(server, "batched", inputs)
    for rows, mine, reference in zip(inputs, answers, alone):
        assert mine.shape == (rows.shape[0], OUTPUTS)
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(mine, expected(rows), rtol=1e-4, atol=1e-5)
    after = statistics(client, "batched")
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    requests = after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"]
    assert inferences == sum(sizes) and requests == len(sizes)
    assert executions < requests, f"{requests} requests ran in {executions} executions: nothing was batched"
    batches = {b["batch_size"]: b["compute_infer"]["count"] for b in after["batch_stats"]}
    assert max(batches) > 1 and max(batches) <= 8, batches
    assert sum(size * count for size, count in batches.items()) == after["inference_count"]
    # Requests waited in the queue for the batch to fill.
    assert after["inference_stats"]["queue"]["ns"] > before["inference_stats"]["queue"]["ns"]


def test_without_dynamic_batching_each_request_runs_alone(server, client):
    before = statistics(client, "unbatched")
    rows = [RNG.standard_normal((2, FEATURES)).astype(np.float32) for _ in range(4)]
    infer_concurrently(server, "unbatched", rows)
    after = statistics(client, "unbatched")
    assert after["execution_count"] - before["execution_count"] == 4
    assert after["inference_count"] - before["inference_count"] == 8


def test_a_full_queue_rejects_the_request(server, client):
    rows = np.ones((1, FEATURES), np.float32)
    with ThreadPoolExecutor(2) as pool:
        # Two requests wait for the batch delay (1.5 s) and fill the queue.
        waiting = pool.submit(infer_concurrently, server, "small_queue", [rows, rows])
        time.sleep(0.5)
        with pytest.raises(InferenceServerException) as excinfo:
            client.infer("small_queue", request_for(rows))
        assert excinfo.value.status() == "503", excinfo.value
        assert "Exceeds maximum queue size" in excinfo.value.message()
        for answer in waiting.result():
            np.testing.assert_allclose(answer, expected(rows), rtol=1e-4, atol=1e-5)
    stats = statistics(client, "small_queue")
    assert stats["inference_stats"]["fail"]["count"] == 1
    assert stats["inference_stats"]["success"]["count"] == 2
    # The two that waited ran together.
    assert stats["execution_count"] == 1


def test_a_request_timeout_expires_in_the_queue(client):
    rows = np.ones((1, FEATURES), np.float32)
    start = time.monotonic()
    with pytest.raises(InferenceServerException) as excinfo:
        client.infer("timeouts", request_for(rows), timeout=100_000)
    waited = time.monotonic() - start
    assert excinfo.value.status() == "503", excinfo.value
    assert "Request timeout expired" in excinfo.value.message()
    assert 0.1 <= waited < 1.5, f"answered after {waited:.2f} s"
    stats = statistics(client, "timeouts")
    assert stats["inference_stats"]["fail"]["count"] == 1
    assert stats["execution_count"] == 0, "a request that timed out in the queue must not run"
    # Without a timeout the request waits out the batch delay and runs.
    result = client.infer("timeouts", request_for(rows))
    np.testing.assert_allclose(result.as_numpy("y"), expected(rows), rtol=1e-4, atol=1e-5)


def test_delay_action_runs_timed_out_requests(client):
    rows = np.full((1, FEATURES), 0.5, np.float32)
    result = client.infer("delayed", request_for(rows))
    np.testing.assert_allclose(result.as_numpy("y"), expected(rows), rtol=1e-4, atol=1e-5)
    assert statistics(client, "delayed")["inference_stats"]["success"]["count"] == 1


def test_instances_serve_side_by_side(server, client):
    rows = [RNG.standard_normal((1, FEATURES)).astype(np.float32) for _ in range(6)]
    answers = infer_concurrently(server, "two_instances", rows)
    for r, a in zip(rows, answers):
        np.testing.assert_allclose(a, expected(r), rtol=1e-4, atol=1e-5)
    config = client.get_model_config("two_instances")
    assert config["instance_group"][0]["count"] == 2


def test_warmup_runs_before_ready_and_stays_out_of_the_statistics(server, client):
    assert client.is_model_ready("warmed")
    log = server.log()
    lines = log.splitlines()
    warm = [i for i, line in enumerate(lines) if "model 'warmed'" in line and "warmup sample" in line]
    assert len(warm) == 3, log
    assert "warmup sample 'zeros' ran 3 time(s)" in lines[warm[0]]
    loaded = [i for i, line in enumerate(lines) if "loaded model 'warmed'" in line]
    assert loaded and max(warm) < loaded[0], "warmup must finish before the version is loaded"
    ready = [i for i, line in enumerate(lines) if "server is ready" in line]
    assert ready and max(warm) < ready[0]
    stats = statistics(client, "warmed")
    assert stats["execution_count"] == 0 and stats["inference_count"] == 0


def test_a_failing_warmup_fails_the_load_with_the_reason(client):
    assert not client.is_model_ready("bad_warmup")
    index = {m["name"]: m for m in client.get_model_repository_index()}
    entry = index["bad_warmup"]
    assert entry["state"] == "UNAVAILABLE"
    assert "warmup sample 'wrong_dims'" in entry["reason"] and "bad_warmup" in entry["reason"], entry
    # The other models keep serving.
    assert client.is_model_ready("batched")


def test_an_instance_group_on_two_gpus_is_unavailable_with_a_reason(client):
    # A model runs on one device (test_server_gpu.py has KIND_GPU models that serve).
    assert not client.is_model_ready("gpu_group")
    index = {m["name"]: m for m in client.get_model_repository_index()}
    entry = index["gpu_group"]
    assert entry["state"] == "UNAVAILABLE"
    assert "gpu_group" in entry["reason"] and "instance_group[0].gpus" in entry["reason"], entry
    assert "one device" in entry["reason"], entry
