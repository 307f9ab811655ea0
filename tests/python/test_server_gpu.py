"""KIND_GPU models in `smelt serve`, through the real tritonclient: a GPU model
answers as its KIND_CPU twin, batches dynamically, shows in the GPU metrics;
a model whose GPU cannot be had is UNAVAILABLE while the others serve; the
GPU `parameters` of config.pbtxt are applied.

In CI the GPU is lavapipe (Mesa's CPU Vulkan driver). Without an adapter the
tests skip, saying why; with SMELT_REQUIRE_GPU=1 they fail instead.
"""

from __future__ import annotations

import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto, helper, numpy_helper

from server_models import VECTOR_RELU_CONFIG, vector_relu_model
from serving import SmeltServer, write_model
from support import make_model

FEATURES = 16
OUTPUTS = 8
RNG = np.random.default_rng(11)
WEIGHTS = RNG.standard_normal((FEATURES, OUTPUTS)).astype(np.float32)
BIAS = RNG.standard_normal(OUTPUTS).astype(np.float32)


def affine_model():
    """y = relu(x @ W + b) over FP32 [batch, 16] -> [batch, 8]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", FEATURES])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", OUTPUTS])
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["z"]),
        helper.make_node("Relu", ["z"], ["y"]),
    ]
    inits = [numpy_helper.from_array(WEIGHTS, "W"), numpy_helper.from_array(BIAS, "b")]
    return make_model(nodes, [x], [y], inits)


def expected(x: np.ndarray) -> np.ndarray:
    return np.maximum(x @ WEIGHTS + BIAS, 0)


def affine_config(name: str, groups: str, extra: str = "", backend: str = "onnxruntime") -> str:
    return f"""
name: "{name}"
backend: "{backend}"
max_batch_size: 8
input [ {{ name: "x", data_type: TYPE_FP32, dims: [ {FEATURES} ] }} ]
output [ {{ name: "y", data_type: TYPE_FP32, dims: [ {OUTPUTS} ] }} ]
instance_group [ {groups} ]
{extra}
"""


def param(key: str, value: str) -> str:
    return f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}\n'


# Batches whatever arrives within 300 ms, up to 8 rows.
BATCHED = "dynamic_batching { max_queue_delay_microseconds: 300000 }"


@pytest.fixture(scope="module")
def adapters(smelt_bin) -> str:
    """`smelt devices` output; skips (or fails with SMELT_REQUIRE_GPU=1) without gpu:0."""
    done = subprocess.run([str(smelt_bin), "devices"], capture_output=True, text=True, timeout=120)
    if done.returncode == 0 and "gpu:0" in done.stdout:
        return done.stdout
    reason = f"no GPU adapter (`smelt devices`: {done.stdout.strip() or done.stderr.strip()})"
    if os.environ.get("SMELT_REQUIRE_GPU") == "1":
        pytest.fail(f"SMELT_REQUIRE_GPU=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def server(adapters, smelt_bin, tmp_path_factory):
    repo = tmp_path_factory.mktemp("gpu_repo")
    model = affine_model()
    write_model(repo, "affine_cpu", model, affine_config("affine_cpu", "{ kind: KIND_CPU }"))
    write_model(repo, "affine_gpu", model,
                affine_config("affine_gpu", "{ kind: KIND_GPU, gpus: [ 0 ], count: 2 }", BATCHED))
    # No gpus: the best adapter; Smelt's own backend name.
    write_model(repo, "affine_gpu_any", model, affine_config("affine_gpu_any", "{ kind: KIND_GPU }",
                                                             backend="smelt"))
    write_model(repo, "affine_auto", model, affine_config("affine_auto", "{ kind: KIND_AUTO }",
                                                          backend="metal_mps"))
    write_model(repo, "bad_gpus", model, affine_config("bad_gpus", "{ kind: KIND_GPU, gpus: [ 7 ] }"))
    write_model(repo, "mixed_groups", model,
                affine_config("mixed_groups", "{ kind: KIND_CPU }, { kind: KIND_GPU }"))
    write_model(repo, "bad_parameter", model,
                affine_config("bad_parameter", "{ kind: KIND_GPU }", param("MPS_MAX_POOL_SIZE", "lots")))
    srv = SmeltServer(smelt_bin, repo, tmp_path_factory.mktemp("gpu_log") / "server.log",
                      "--model-control-mode", "explicit", "--load-model", "*").wait_ready()
    yield srv
    srv.stop_cleanly()


@pytest.fixture
def client(server):
    c = server.http_client()
    yield c
    c.close()


def infer(client, model: str, x: np.ndarray) -> np.ndarray:
    inp = httpclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    return client.infer(model, [inp]).as_numpy("y")


def random_rows(n: int) -> np.ndarray:
    # Non-zero, both signs, so the Relu and every weight matter.
    x = RNG.uniform(0.1, 2.0, (n, FEATURES)).astype(np.float32)
    return x * RNG.choice([-1.0, 1.0], (n, FEATURES)).astype(np.float32)


def metric(text: str, name: str, **labels: str) -> list[float]:
    """Values of NAME's series whose labels include LABELS."""
    values = []
    for line in text.splitlines():
        m = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if not m:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            values.append(float(m.group(2)))
    return values


def test_gpu_model_answers_as_its_cpu_twin(client):
    for rows in (1, 3, 8):
        x = random_rows(rows)
        cpu = infer(client, "affine_cpu", x)
        gpu = infer(client, "affine_gpu", x)
        assert np.abs(cpu).max() > 0
        np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(gpu, expected(x), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(infer(client, "affine_gpu_any", x), cpu, rtol=1e-4, atol=1e-5)


def test_config_reports_the_gpu(client):
    groups = client.get_model_config("affine_gpu")["instance_group"]
    assert groups[0]["kind"] == "KIND_GPU" and groups[0]["gpus"] == [0] and groups[0]["count"] == 2
    groups = client.get_model_config("affine_gpu_any")["instance_group"]
    assert groups[0]["kind"] == "KIND_GPU" and len(groups[0]["gpus"]) == 1


def test_kind_auto_stays_off_cpu_type_adapters(client, adapters):
    kind = client.get_model_config("affine_auto")["instance_group"][0]["kind"]
    x = random_rows(2)
    np.testing.assert_allclose(infer(client, "affine_auto", x), expected(x), rtol=1e-4, atol=1e-5)
    # `smelt devices` prints each adapter's type; KIND_AUTO takes a GPU only
    # when one is not a CPU-type adapter (lavapipe is).
    types = re.findall(r"^gpu:\d+ .*\((?:vulkan|metal|dx12|gl), (\w+)\)", adapters, re.M)
    assert types, f"no adapter type in `smelt devices`:\n{adapters}"
    real_gpu = any(t != "Cpu" for t in types)
    assert kind == ("KIND_GPU" if real_gpu else "KIND_CPU"), adapters


def test_dynamic_batching_on_the_gpu(client, server):
    before = client.get_inference_statistics("affine_gpu")["model_stats"][0]
    xs = [random_rows(1) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        clients = [server.http_client() for _ in xs]
        try:
            got = list(pool.map(lambda cx: infer(cx[0], "affine_gpu", cx[1]), zip(clients, xs)))
        finally:
            for c in clients:
                c.close()
    for x, y in zip(xs, got):
        np.testing.assert_allclose(y, expected(x), rtol=1e-4, atol=1e-5)
    after = client.get_inference_statistics("affine_gpu")["model_stats"][0]
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert inferences == 8
    assert executions < 8, f"8 concurrent requests ran in {executions} executions: no batching"


def test_gpu_metrics(client, server):
    infer(client, "affine_gpu", random_rows(4))
    text = server.metrics()
    used = re.findall(r'^nv_gpu_memory_used_bytes\{gpu_uuid="([^"]+)"\} (\S+)$', text, re.M)
    assert len(used) == 1, text
    uuid, used_bytes = used[0][0], float(used[0][1])
    assert uuid.startswith("gpu0-"), uuid
    assert used_bytes > 0
    assert metric(text, "nv_gpu_memory_total_bytes", gpu_uuid=uuid) == [0.0], "wgpu reports no memory size"
    allocated = metric(text, "smelt_gpu_pool_allocated_bytes", gpu_uuid=uuid)[0]
    assert allocated > 0 and used_bytes >= allocated
    assert metric(text, "smelt_gpu_pool_peak_bytes", gpu_uuid=uuid)[0] >= allocated
    assert metric(text, "smelt_gpu_weight_bytes", gpu_uuid=uuid)[0] >= WEIGHTS.nbytes + BIAS.nbytes
    assert metric(text, "smelt_gpu_pool_misses_total", gpu_uuid=uuid)[0] > 0
    for name in ("smelt_gpu_pool_pooled_bytes", "smelt_gpu_pool_hits_total", "smelt_gpu_pool_evictions_total"):
        assert len(metric(text, name, gpu_uuid=uuid)) == 1, name
        assert f"# HELP {name} " in text
    assert "nv_gpu_utilization" not in text, "not measured, so not reported"
    # Per-model families carry the adapter of GPU versions, as Triton's do.
    success = metric(text, "nv_inference_request_success", gpu_uuid=uuid, model="affine_gpu", version="1")
    assert success and success[0] >= 1, text
    assert re.search(r'^nv_inference_request_success\{model="affine_cpu",version="1"\} ', text, re.M), text
    assert metric(text, "nv_inference_request_failure", gpu_uuid=uuid, model="affine_gpu",
                  reason="BACKEND", version="1") == [0.0]


def test_a_model_without_its_gpu_is_unavailable_and_the_rest_serve(client):
    rows = {r["name"]: r for r in client.get_model_repository_index()}
    bad = rows["bad_gpus"]
    assert bad["state"] == "UNAVAILABLE"
    assert "instance_group[0].gpus" in bad["reason"] and "gpu:7 does not exist" in bad["reason"], bad
    mixed = rows["mixed_groups"]
    assert mixed["state"] == "UNAVAILABLE"
    assert "instance_group[1].kind" in mixed["reason"] and "one device" in mixed["reason"], mixed
    wrong = rows["bad_parameter"]
    assert wrong["state"] == "UNAVAILABLE"
    assert "parameters.MPS_MAX_POOL_SIZE" in wrong["reason"] and "config.pbtxt" in wrong["reason"], wrong
    assert not client.is_model_ready("bad_gpus")
    x = random_rows(2)
    np.testing.assert_allclose(infer(client, "affine_gpu", x), expected(x), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(infer(client, "affine_cpu", x), expected(x), rtol=1e-4, atol=1e-5)


def test_grpc_on_the_gpu(server):
    c = server.grpc_client()
    try:
        x = random_rows(3)
        inp = grpcclient.InferInput("x", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        y = c.infer("affine_gpu", [inp]).as_numpy("y")
        np.testing.assert_allclose(y, expected(x), rtol=1e-4, atol=1e-5)
    finally:
        c.close()


def test_unload_and_load_a_gpu_model(client):
    client.unload_model("affine_gpu_any")
    assert not client.is_model_ready("affine_gpu_any")
    client.load_model("affine_gpu_any")
    x = random_rows(5)
    np.testing.assert_allclose(infer(client, "affine_gpu_any", x), expected(x), rtol=1e-4, atol=1e-5)


def test_gpu_parameters_are_applied(adapters, smelt_bin, tmp_path):
    """MPS_VERBOSE logs the context's settings; a pool cap of 0 keeps no idle
    buffer, so buffers given back are evicted at once."""
    repo = tmp_path / "repo"
    config = VECTOR_RELU_CONFIG + "instance_group [ { kind: KIND_GPU } ]\n" + param("MPS_VERBOSE", "1") \
        + param("gpu_pool_max_bytes", "0") + param("MPS_MAX_BUFFER_AGE", "600")
    write_model(repo, "vector_relu", vector_relu_model(), config)
    srv = SmeltServer(smelt_bin, repo, tmp_path / "server.log").wait_ready()
    try:
        c = srv.http_client()
        try:
            # More distinct lengths than a plan keeps layouts for (16): the plan
            # drops its layouts and gives their buffers back to the pool.
            for n in range(1, 21):
                x = RNG.standard_normal(n * 37).astype(np.float32)
                inp = httpclient.InferInput("x", [x.size], "FP32")
                inp.set_data_from_numpy(x)
                y = c.infer("vector_relu", [inp]).as_numpy("y")
                np.testing.assert_allclose(y, np.maximum(x, 0))
        finally:
            c.close()
        text = srv.metrics()
        uuid = re.findall(r'^nv_gpu_memory_used_bytes\{gpu_uuid="([^"]+)"\}', text, re.M)[0]
        assert metric(text, "smelt_gpu_pool_evictions_total", gpu_uuid=uuid)[0] > 0, text
        assert metric(text, "smelt_gpu_pool_pooled_bytes", gpu_uuid=uuid) == [0.0], text
        assert metric(text, "smelt_gpu_pool_hits_total", gpu_uuid=uuid) == [0.0], "a cap of 0 pools nothing"
    finally:
        log = srv.stop_cleanly()
    assert re.search(r"\[smelt-gpu\] opened gpu:\d+ .*pool cap 0 bytes, max age 600s", log), log
