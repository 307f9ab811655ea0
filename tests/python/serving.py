"""Running the real `smelt serve` for the server tests.

`SmeltServer` starts the binary as a child process on free loopback ports
(HTTP, gRPC and metrics), waits until it reports ready, and stops it with a
signal. `write_model` lays out one model of a Triton model repository.
Every server test module builds on these, so each one drives the same binary
the same way a user would.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import onnx
import pytest

from support import PANIC_MARKER, REPO_ROOT, save_model

# Seconds the server may take to load a test repository and become ready.
STARTUP_TIMEOUT_S = 120


def write_model(repo: Path, name: str, model: onnx.ModelProto, config: str | None,
                versions: tuple[int, ...] = (1,)) -> Path:
    """`<repo>/<name>/<v>/model.onnx` for each version, and config.pbtxt if given."""
    folder = repo / name
    for v in versions:
        save_model(model, folder / str(v) / "model.onnx")
    if config is not None:
        (folder / "config.pbtxt").write_text(config)
    return folder


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmeltServer:
    """`smelt serve` as a child process on loopback ports, its log in a file."""

    def __init__(self, binary: Path, repos: Path | list[Path], log_path: Path, *extra: str):
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.metrics_port = free_port()
        self.log_path = log_path
        repo_flags = []
        for repo in (repos if isinstance(repos, list) else [repos]):
            repo_flags += ["--model-repository", str(repo)]
        self.command = [
            str(binary), "serve", *repo_flags,
            "--http-address", "127.0.0.1",
            "--grpc-address", "127.0.0.1",
            "--http-port", str(self.http_port),
            "--grpc-port", str(self.grpc_port),
            "--metrics-port", str(self.metrics_port),
            *extra,
        ]
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT,
                                        cwd=REPO_ROOT)
        self.url = f"127.0.0.1:{self.http_port}"
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def http_client(self, **kwargs):
        import tritonclient.http as httpclient
        return httpclient.InferenceServerClient(self.url, **kwargs)

    def grpc_client(self, **kwargs):
        import tritonclient.grpc as grpcclient
        return grpcclient.InferenceServerClient(self.grpc_url, **kwargs)

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            return response.read().decode()

    def wait_ready(self) -> "SmeltServer":
        client = self.http_client()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    pytest.fail(f"smelt serve exited with {self.process.returncode} during startup:\n"
                                f"{self.log()}", pytrace=False)
                try:
                    if client.is_server_ready():
                        return self
                except Exception:
                    pass
                time.sleep(0.2)
        finally:
            client.close()
        self.stop()
        pytest.fail(f"smelt serve was not ready after {STARTUP_TIMEOUT_S} s:\n{self.log()}",
                    pytrace=False)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self._log.closed:
            self._log.close()
        return self.process.returncode

    def stop_cleanly(self) -> str:
        """Stops with SIGTERM and checks the server exited 0 without a panic; returns the log."""
        code = self.stop()
        text = self.log_path.read_text()
        assert PANIC_MARKER not in text, f"the server panicked:\n{text}"
        assert code == 0, f"smelt serve exited with {code} after SIGTERM:\n{text}"
        return text
