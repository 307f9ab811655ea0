"""Graceful shutdown of `smelt serve`.

A model made slow on purpose (a chain of MatMuls with one permutation matrix,
so the answer is exact and cheap to compute here) keeps a request running
while the server gets SIGTERM. The request in flight must finish with the right
answer, new connections must be refused at once, and the process must exit 0
well within --exit-timeout-secs. A request that outlasts --exit-timeout-secs is
abandoned: the process exits at the timeout instead of waiting for it.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import tritonclient.http as httpclient
from onnx import TensorProto, helper

from serving import SmeltServer, write_model
from support import PANIC_MARKER, make_model

# The slow model: y = x @ P @ P ... (MATMULS times), x: FP32 [rows, WIDTH].
WIDTH = 512
MATMULS = 300
# Rows of the request in flight: about 3 s of compute on a quiet 2-core machine
# with AVX-512 (each row costs MATMULS * WIDTH * WIDTH * 2 FLOP), well past the
# 1 s the test waits before checking the request is still running.
ROWS = 4096
# Rows of the request that outlasts --exit-timeout-secs: 25 MB of body, under
# the default --http-max-input-size.
STUCK_ROWS = 12 * 1024
SEED = 7


def permutation() -> np.ndarray:
    return np.random.default_rng(SEED).permutation(WIDTH)


def slow_model() -> onnx.ModelProto:
    perm = permutation()
    p = np.zeros((WIDTH, WIDTH), np.float32)
    p[np.arange(WIDTH), perm] = 1.0
    nodes, previous = [], "x"
    for i in range(MATMULS):
        out = "y" if i == MATMULS - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [previous, "P"], [out]))
        previous = out
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", WIDTH])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", WIDTH])],
                      [onnx.numpy_helper.from_array(p, "P")])


def expected(x: np.ndarray) -> np.ndarray:
    """x @ P, MATMULS times: P moves column i to column perm[i]."""
    perm = permutation()
    y = x
    for _ in range(MATMULS):
        z = np.empty_like(y)
        z[:, perm] = y
        y = z
    return y


CONFIG = f"""
max_batch_size: 0
input [ {{ name: "x", data_type: TYPE_FP32, dims: [ -1, {WIDTH} ] }} ]
output [ {{ name: "y", data_type: TYPE_FP32, dims: [ -1, {WIDTH} ] }} ]
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shutdown_repo")
    write_model(folder, "slow", slow_model(), CONFIG)
    return folder


class InFlight:
    """One inference on its own thread, with what came of it."""

    def __init__(self, url: str, x: np.ndarray):
        self.x = x
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self.thread.start()

    def _run(self, url: str) -> None:
        client = httpclient.InferenceServerClient(url, network_timeout=300, connection_timeout=300)
        try:
            tensor = httpclient.InferInput("x", list(self.x.shape), "FP32")
            tensor.set_data_from_numpy(self.x, binary_data=True)
            answer = client.infer("slow", [tensor])
            self.result = answer.as_numpy("y")
        except BaseException as e:  # noqa: BLE001 - recorded for the test to judge
            self.error = e
        finally:
            client.close()


def wait_running(server: SmeltServer, inflight: InFlight, seconds: float = 0.7) -> None:
    """Gives the request time to reach the model, and checks it is still running."""
    time.sleep(seconds)
    assert inflight.thread.is_alive(), (
        f"the request finished before SIGTERM was sent (error: {inflight.error}); the slow model is too fast "
        f"to test a shutdown with a request in flight")
    assert server.process.poll() is None, server.log()


def connection_refused(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
        return False


def test_sigterm_finishes_the_request_in_flight(smelt_bin, repo, tmp_path):
    exit_timeout = 60
    server = SmeltServer(smelt_bin, repo, tmp_path / "server.log", "--exit-timeout-secs", str(exit_timeout))
    server.wait_ready()
    try:
        x = np.random.default_rng(1).standard_normal((ROWS, WIDTH)).astype(np.float32)
        inflight = InFlight(server.url, x)
        wait_running(server, inflight)
        server.process.send_signal(signal.SIGTERM)
        sent = time.monotonic()

        # New connections are refused while the request still runs.
        time.sleep(0.3)
        assert connection_refused(server.http_port), "a new connection was accepted after SIGTERM"
        assert inflight.thread.is_alive(), "the request in flight ended before the refusal was checked"
        assert server.process.poll() is None, "the server exited with a request still in flight"

        inflight.thread.join(timeout=exit_timeout)
        assert not inflight.thread.is_alive(), "the request in flight did not finish"
        assert inflight.error is None, f"the request in flight failed: {inflight.error}\n{server.log()}"
        np.testing.assert_array_equal(inflight.result, expected(x))

        code = server.process.wait(timeout=exit_timeout)
        took = time.monotonic() - sent
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert PANIC_MARKER not in log, log
    assert code == 0, f"exit code {code}:\n{log}"
    assert took < exit_timeout, f"exit took {took:.1f} s"
    assert "SIGTERM received" in log and "all requests finished" in log, log


def test_a_stuck_shutdown_is_cut_at_the_exit_timeout(smelt_bin, repo, tmp_path):
    exit_timeout = 2
    server = SmeltServer(smelt_bin, repo, tmp_path / "server.log", "--exit-timeout-secs", str(exit_timeout))
    server.wait_ready()
    try:
        # Twelve times the rows: about 25 s of compute, far past the exit timeout.
        x = np.random.default_rng(2).standard_normal((STUCK_ROWS, WIDTH)).astype(np.float32)
        inflight = InFlight(server.url, x)
        wait_running(server, inflight, seconds=1.5)
        server.process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = server.process.wait(timeout=60)
        took = time.monotonic() - sent
        inflight.thread.join(timeout=30)
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert PANIC_MARKER not in log, log
    assert exit_timeout - 0.5 <= took <= exit_timeout + 3, f"exit took {took:.1f} s with --exit-timeout-secs {exit_timeout}"
    assert code == 0, f"exit code {code}:\n{log}"
    assert "--exit-timeout-secs reached" in log, log
    # The abandoned request got no answer (its connection was closed), never a wrong one.
    assert inflight.result is None and inflight.error is not None
