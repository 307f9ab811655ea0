"""The Prometheus endpoint of `smelt serve` (GET /metrics on --metrics-port):
Triton's metric names, help texts, types and labels, and values that follow
the requests sent through the real `tritonclient.http`.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from onnx import TensorProto, helper
from tritonclient.utils import InferenceServerException

from serving import SmeltServer, write_model
from support import make_model

# Triton's help text and type of every family Smelt reports per model version.
PER_MODEL = {
    "nv_inference_request_success": ("counter", "Number of successful inference requests, all batch sizes"),
    "nv_inference_request_failure": ("counter", "Number of failed inference requests, all batch sizes"),
    "nv_inference_count": ("counter", "Number of inferences performed (does not include cached requests)"),
    "nv_inference_exec_count": ("counter", "Number of model executions performed (does not include cached requests)"),
    "nv_inference_request_duration_us": (
        "counter", "Cumulative inference request duration in microseconds (includes cached requests)"),
    "nv_inference_queue_duration_us": (
        "counter", "Cumulative inference queuing duration in microseconds (includes cached requests)"),
    "nv_inference_compute_input_duration_us": (
        "counter", "Cumulative compute input duration in microseconds (does not include cached requests)"),
    "nv_inference_compute_infer_duration_us": (
        "counter", "Cumulative compute inference duration in microseconds (does not include cached requests)"),
    "nv_inference_compute_output_duration_us": (
        "counter", "Cumulative inference compute output duration in microseconds (does not include cached requests)"),
    "nv_inference_pending_request_count": (
        "gauge", "Instantaneous number of pending requests awaiting execution per-model."),
    "nv_model_load_duration_secs": ("gauge", "Model load time in seconds"),
    "nv_inference_request_summary_us": (
        "summary", "Summary of inference request duration in microseconds (includes cached requests)"),
    "nv_inference_queue_summary_us": (
        "summary", "Summary of inference queuing duration in microseconds (includes cached requests)"),
    "nv_inference_compute_input_summary_us": (
        "summary", "Cumulative compute input duration in microseconds (does not include cached requests)"),
    "nv_inference_compute_infer_summary_us": (
        "summary", "Cumulative compute inference duration in microseconds (does not include cached requests)"),
    "nv_inference_compute_output_summary_us": (
        "summary", "Cumulative inference compute output duration in microseconds (does not include cached requests)"),
}
CPU = {
    "nv_cpu_utilization": ("gauge", "CPU utilization rate [0.0 - 1.0]"),
    "nv_cpu_memory_total_bytes": ("gauge", "CPU total memory (RAM), in bytes"),
    "nv_cpu_memory_used_bytes": ("gauge", "CPU used memory (RAM), in bytes"),
}
QUANTILES = ("0.5", "0.9", "0.95", "0.99", "0.999")
SAMPLE = re.compile(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$')


def double_model():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    return make_model([helper.make_node("Add", ["x", "x"], ["y"])], [x], [y])


CONFIG = """
name: "{name}"
backend: "onnxruntime"
max_batch_size: 8
input [ {{ name: "x", data_type: TYPE_FP32, dims: [ 4 ] }} ]
output [ {{ name: "y", data_type: TYPE_FP32, dims: [ 4 ] }} ]
{extra}
"""
# At most one request waits, and it waits 1 s for a batch that never fills.
ONE_SLOT_QUEUE = """dynamic_batching {
  max_queue_delay_microseconds: 1000000
  default_queue_policy { max_queue_size: 1 }
}"""


@pytest.fixture(scope="module")
def server(smelt_bin: Path, tmp_path_factory):
    repo = tmp_path_factory.mktemp("metrics_repository")
    write_model(repo, "double", double_model(), CONFIG.format(name="double", extra=""))
    write_model(repo, "queued", double_model(), CONFIG.format(name="queued", extra=ONE_SLOT_QUEUE))
    log = tmp_path_factory.mktemp("server") / "smelt-serve.log"
    srv = SmeltServer(smelt_bin, repo, log, "--threads", "2", "--metrics-config", "summary_latencies=true",
                      "--metrics-interval-ms", "100").wait_ready()
    yield srv
    srv.stop_cleanly()


@pytest.fixture
def client(server: SmeltServer):
    c = server.http_client()
    yield c
    c.close()


def parse(text: str) -> tuple[dict, dict, dict]:
    """(help by family, type by family, value by (name, frozenset of labels))."""
    helps, types, values = {}, {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[len("# HELP "):].partition(" ")
            helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[len("# TYPE "):].partition(" ")
            types[name] = kind
        elif line:
            m = SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            labels = frozenset(re.findall(r'([a-z_]+)="([^"]*)"', m.group(2) or ""))
            values[(m.group(1), labels)] = float(m.group(3))
    return helps, types, values


def labels(model: str, **extra) -> frozenset:
    return frozenset({("model", model), ("version", "1"), *extra.items()})


def value(values: dict, name: str, model: str, **extra) -> float:
    key = (name, labels(model, **extra))
    assert key in values, f"no sample {name}{dict(key[1])}"
    return values[key]


def send(client, model: str, rows: int = 1):
    x = httpclient.InferInput("x", [rows, 4], "FP32")
    data = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)
    x.set_data_from_numpy(data)
    result = client.infer(model, [x])
    np.testing.assert_array_equal(result.as_numpy("y"), data + data)


def test_every_family_has_triton_help_type_and_labels(server, client):
    send(client, "double")
    helps, types, values = parse(server.metrics())
    for name, (kind, help_text) in {**PER_MODEL, **CPU}.items():
        assert helps.get(name) == help_text, f"{name}: help {helps.get(name)!r}"
        assert types.get(name) == kind, f"{name}: type {types.get(name)!r}"
    for model in ("double", "queued"):
        for name, (kind, _) in PER_MODEL.items():
            if kind == "summary":
                value(values, f"{name}_count", model)
                value(values, f"{name}_sum", model)
                for q in QUANTILES:
                    value(values, name, model, quantile=q)
            elif name == "nv_inference_request_failure":
                for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER"):
                    value(values, name, model, reason=reason)
            else:
                value(values, name, model)
    assert value(values, "nv_model_load_duration_secs", "double") > 0
    total = values[("nv_cpu_memory_total_bytes", frozenset())]
    used = values[("nv_cpu_memory_used_bytes", frozenset())]
    assert 0 < used <= total
    assert 0.0 <= values[("nv_cpu_utilization", frozenset())] <= 1.0


def test_counts_rise_by_the_requests_sent(server, client):
    _, _, before = parse(server.metrics())
    for rows in (1, 3, 2):
        send(client, "double", rows)
    _, _, after = parse(server.metrics())

    def rise(name: str, **extra) -> float:
        return value(after, name, "double", **extra) - value(before, name, "double", **extra)

    assert rise("nv_inference_request_success") == 3
    assert rise("nv_inference_count") == 6
    assert rise("nv_inference_exec_count") == 3
    assert rise("nv_inference_request_summary_us_count") == 3
    assert rise("nv_inference_request_duration_us") > 0
    assert rise("nv_inference_compute_infer_duration_us") > 0
    # The summary's sum is the counter's value.
    assert value(after, "nv_inference_request_summary_us_sum", "double") == \
        value(after, "nv_inference_request_duration_us", "double")
    # The metrics agree with the statistics extension.
    stats = client.get_inference_statistics("double")["model_stats"][0]
    assert stats["inference_count"] == value(after, "nv_inference_count", "double")
    assert stats["execution_count"] == value(after, "nv_inference_exec_count", "double")
    assert rise("nv_inference_request_failure", reason="OTHER") == 0


def test_failures_are_counted_with_their_reason(server, client):
    _, _, before = parse(server.metrics())
    bad = httpclient.InferInput("x", [1, 5], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 5), np.float32))
    with pytest.raises(InferenceServerException):
        client.infer("double", [bad])
    # One request waits in the one-slot queue; the next is rejected.
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(_infer_with_own_client, server, "queued")
        _, _, during = parse(_wait_for_pending(server, "queued", 1))
        assert value(during, "nv_inference_pending_request_count", "queued") == 1
        with pytest.raises(InferenceServerException) as excinfo:
            client.infer("queued", [_input()])
        assert "Exceeds maximum queue size" in excinfo.value.message()
        waiting.result()
    _, _, after = parse(server.metrics())
    assert value(after, "nv_inference_request_failure", "double", reason="OTHER") - \
        value(before, "nv_inference_request_failure", "double", reason="OTHER") == 1
    assert value(after, "nv_inference_request_failure", "queued", reason="REJECTED") - \
        value(before, "nv_inference_request_failure", "queued", reason="REJECTED") == 1
    assert value(after, "nv_inference_pending_request_count", "queued") == 0
    # The request that waited spent about the batch delay (1 s) in the queue.
    assert value(after, "nv_inference_queue_duration_us", "queued") - \
        value(before, "nv_inference_queue_duration_us", "queued") >= 900_000


def _infer_with_own_client(server, model: str):
    c = server.http_client()
    try:
        return c.infer(model, [_input()]).as_numpy("y")
    finally:
        c.close()


def _input():
    x = httpclient.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.ones((1, 4), np.float32))
    return x


def _wait_for_pending(server, model: str, count: int) -> str:
    deadline = time.monotonic() + 5
    while True:
        text = server.metrics()
        _, _, values = parse(text)
        if values.get(("nv_inference_pending_request_count", labels(model))) == count or \
                time.monotonic() > deadline:
            return text
        time.sleep(0.02)


def test_metrics_can_be_turned_off(smelt_bin, tmp_path):
    repo = tmp_path / "repo"
    write_model(repo, "double", double_model(), CONFIG.format(name="double", extra=""))
    srv = SmeltServer(smelt_bin, repo, tmp_path / "log", "--allow-metrics=false").wait_ready()
    try:
        with pytest.raises(urllib.error.URLError):
            srv.metrics()
    finally:
        srv.stop_cleanly()


def test_counter_latencies_can_be_turned_off(smelt_bin, tmp_path):
    repo = tmp_path / "repo"
    write_model(repo, "double", double_model(), CONFIG.format(name="double", extra=""))
    srv = SmeltServer(smelt_bin, repo, tmp_path / "log", "--metrics-config", "counter_latencies=false",
                      "--allow-cpu-metrics=false").wait_ready()
    try:
        text = srv.metrics()
        assert "nv_inference_request_success{" in text
        assert "_duration_us" not in text and "_summary_us" not in text and "nv_cpu_" not in text
    finally:
        srv.stop_cleanly()
