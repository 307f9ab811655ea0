"""Loading, reloading and unloading models while requests keep coming.

Several client threads send inferences over HTTP without pause, each on its own
keep-alive connection, while the model under them is unloaded and loaded
(explicit mode), reloaded with a different model file (explicit mode), or
replaced on disk and picked up by the repository poll (poll mode). Every
request must end in a correct answer (from the old or the new model) or a clean
503 UNAVAILABLE / 404 NOT_FOUND: never a hang, a dropped connection, another
status or a wrong answer. After a swap, a new request gets the new model.

The models add a constant to their input (`y = x + c`), so an answer says which
model gave it.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import tritonclient.http as httpclient
from onnx import TensorProto, helper

from serving import SmeltServer, write_model
from support import make_model, save_model

CLIENT_THREADS = 4
# A request that takes longer than this counts as hung.
REQUEST_TIMEOUT_S = 30
X = [1.0, 2.0, 3.0, 4.0]


def add_model(c: float) -> onnx.ModelProto:
    """y = x + c, x and y FP32 [batch, 4]."""
    return make_model(
        [helper.make_node("Add", ["x", "c"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [onnx.numpy_helper.from_array(np.full([4], c, np.float32), "c")],
    )


def replace_model_file(path: Path, c: float) -> None:
    """Writes the model beside PATH and renames it over PATH, as a deployment
    would, so the server never sees half a file."""
    staged = path.with_name(".staged." + path.name)
    save_model(add_model(c), staged)
    os.replace(staged, path)


class Load:
    """CLIENT_THREADS threads sending requests to MODEL until stopped. Each
    records, in order, the constant its answers showed (or 'UNAVAILABLE' /
    'NOT_FOUND'); anything else is a failure."""

    def __init__(self, server: SmeltServer, model: str):
        self.port = server.http_port
        self.model = model
        self.stop = threading.Event()
        self.seen: list[list[object]] = [[] for _ in range(CLIENT_THREADS)]
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True)
                        for i in range(CLIENT_THREADS)]
        for t in self.threads:
            t.start()

    def _client(self, index: int) -> None:
        body = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": X}]})
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S)
        try:
            while not self.stop.is_set():
                try:
                    connection.request("POST", f"/v2/models/{self.model}/infer", body,
                                       {"Content-Type": "application/json"})
                    response = connection.getresponse()
                    payload = response.read()
                except Exception as e:  # noqa: BLE001 - every transport error is a failure
                    self.failures.append(f"thread {index}: {type(e).__name__}: {e}")
                    return
                outcome = self._judge(response.status, payload)
                if isinstance(outcome, str) and outcome.startswith("failure"):
                    self.failures.append(f"thread {index}: {outcome}")
                    return
                self.seen[index].append(outcome)
        finally:
            connection.close()

    @staticmethod
    def _judge(status: int, payload: bytes) -> object:
        try:
            answer = json.loads(payload)
        except ValueError:
            return f"failure: status {status} with a body that is not JSON: {payload[:200]!r}"
        if status == 200:
            y = answer["outputs"][0]["data"]
            c = y[0] - X[0]
            if y != [v + c for v in X] or c not in (1.0, 2.0, 3.0):
                return f"failure: wrong answer {y}"
            return c
        if status in (503, 404) and "error" in answer:
            return "UNAVAILABLE" if status == 503 else "NOT_FOUND"
        return f"failure: status {status}: {payload[:200]!r}"

    def finish(self) -> list[object]:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=REQUEST_TIMEOUT_S + 5)
        hung = [i for i, t in enumerate(self.threads) if t.is_alive()]
        assert not hung, f"client threads {hung} never got an answer"
        assert not self.failures, "\n".join(self.failures)
        return [outcome for outcomes in self.seen for outcome in outcomes]

    def counts(self) -> int:
        return sum(len(s) for s in self.seen)


def one_answer(server: SmeltServer, model: str) -> object:
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=REQUEST_TIMEOUT_S)
    try:
        body = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": X}]})
        connection.request("POST", f"/v2/models/{model}/infer", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return Load._judge(response.status, response.read())
    finally:
        connection.close()


def wait_for_requests(load: Load, more: int, timeout: float = 20) -> None:
    """Waits until the clients have got MORE answers beyond what they had."""
    target = load.counts() + more
    deadline = time.monotonic() + timeout
    while load.counts() < target:
        assert not load.failures, "\n".join(load.failures)
        assert time.monotonic() < deadline, f"the clients got fewer than {more} answers in {timeout} s"
        time.sleep(0.01)


@pytest.fixture
def repo(tmp_path) -> Path:
    folder = tmp_path / "repo"
    write_model(folder, "adder", add_model(1.0), None)
    return folder


def test_unload_and_load_under_load(smelt_bin, repo, tmp_path):
    server = SmeltServer(smelt_bin, repo, tmp_path / "server.log", "--model-control-mode", "explicit",
                         "--load-model", "adder").wait_ready()
    client = httpclient.InferenceServerClient(server.url, network_timeout=60)
    try:
        load = Load(server, "adder")
        for _ in range(6):
            wait_for_requests(load, 20)
            client.unload_model("adder")
            assert one_answer(server, "adder") == "UNAVAILABLE"
            wait_for_requests(load, 8)
            client.load_model("adder")
            assert one_answer(server, "adder") == 1.0
        wait_for_requests(load, 20)
        outcomes = load.finish()
    finally:
        client.close()
    server.stop_cleanly()
    assert outcomes.count(1.0) > 0 and outcomes.count("UNAVAILABLE") > 0, outcomes
    assert set(outcomes) <= {1.0, "UNAVAILABLE"}, set(outcomes)


def test_reload_with_a_new_model_file_drops_nothing(smelt_bin, repo, tmp_path):
    """Explicit reloads of a model that stays loaded: no request is refused, and
    answers switch to the new model as each load returns."""
    server = SmeltServer(smelt_bin, repo, tmp_path / "server.log", "--model-control-mode", "explicit",
                         "--load-model", "adder").wait_ready()
    client = httpclient.InferenceServerClient(server.url, network_timeout=60)
    model_file = repo / "adder" / "1" / "model.onnx"
    try:
        load = Load(server, "adder")
        for c in [2.0, 1.0, 2.0, 1.0, 2.0]:
            wait_for_requests(load, 20)
            replace_model_file(model_file, c)
            client.load_model("adder")
            assert one_answer(server, "adder") == c, "a request after the reload got the old model"
        wait_for_requests(load, 20)
        outcomes = load.finish()
    finally:
        client.close()
    server.stop_cleanly()
    assert set(outcomes) == {1.0, 2.0}, set(outcomes)


def test_poll_mode_follows_the_repository(smelt_bin, repo, tmp_path):
    server = SmeltServer(smelt_bin, repo, tmp_path / "server.log", "--model-control-mode", "poll",
                         "--repository-poll-secs", "1").wait_ready()
    client = httpclient.InferenceServerClient(server.url, network_timeout=60)
    try:
        # A refused load/unload request: poll mode owns the model table.
        with pytest.raises(Exception, match="explicit"):
            client.unload_model("adder")

        load = Load(server, "adder")
        wait_for_requests(load, 20)
        replace_model_file(repo / "adder" / "1" / "model.onnx", 2.0)
        deadline = time.monotonic() + 30
        while one_answer(server, "adder") != 2.0:
            assert time.monotonic() < deadline, f"the changed model was not picked up:\n{server.log()}"
            time.sleep(0.1)
        wait_for_requests(load, 20)

        # A new version folder takes over (the default policy serves the latest).
        save_model(add_model(3.0), repo / "adder" / "2" / ".staged.onnx")
        os.replace(repo / "adder" / "2" / ".staged.onnx", repo / "adder" / "2" / "model.onnx")
        while one_answer(server, "adder") != 3.0:
            assert time.monotonic() < deadline, f"version 2 was not picked up:\n{server.log()}"
            time.sleep(0.1)
        wait_for_requests(load, 20)
        outcomes = load.finish()

        # Each client saw the constants in order: once a thread got the new model,
        # it never got the old one again; no request was refused or lost.
        for thread_outcomes in load.seen:
            assert thread_outcomes == sorted(thread_outcomes), thread_outcomes
        assert set(outcomes) == {1.0, 2.0, 3.0}, set(outcomes)

        # A model added to the repository is loaded; a removed one is gone.
        staging = tmp_path / "staging"
        write_model(staging, "added", add_model(1.0), None)
        shutil.move(staging / "added", repo / "added")
        while one_answer(server, "added") != 1.0:
            assert time.monotonic() < deadline + 30, f"the added model was not loaded:\n{server.log()}"
            time.sleep(0.1)
        shutil.rmtree(repo / "added")
        while one_answer(server, "added") != "NOT_FOUND":
            assert time.monotonic() < deadline + 30, f"the removed model is still served:\n{server.log()}"
            time.sleep(0.1)
        assert "added" not in [m["name"] for m in client.get_model_repository_index()]
        # Removing version 2 goes back to version 1.
        shutil.rmtree(repo / "adder" / "2")
        while one_answer(server, "adder") != 2.0:
            assert time.monotonic() < deadline + 30, f"removing version 2 was not picked up:\n{server.log()}"
            time.sleep(0.1)
        assert client.get_model_metadata("adder")["versions"] == ["1"]
    finally:
        client.close()
    server.stop_cleanly()
