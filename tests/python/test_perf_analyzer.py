"""NVIDIA's own perf_analyzer (the binary shipped in the tritonclient 2.50.0
wheel) against `smelt serve`, over HTTP and gRPC, at concurrency 1, 4 and 16.

perf_analyzer reads the model's configuration and metadata from the server,
sends requests, and reads the server's statistics before and after measuring;
it refuses to go on when any of those answers is not what Triton would give.
Each run sends a fixed number of requests (--request-count) so that the
server's statistics can be checked to grow by exactly that many.
"""

from __future__ import annotations

import csv
import os
import subprocess
import time
import warnings

import pytest
import tritonclient.http as httpclient

from serving import SmeltServer
from support import REPO_ROOT

VENV = REPO_ROOT / ".venv"
PERF_ANALYZER = VENV / "bin" / "perf_analyzer"
# perf_analyzer links libcudart (no GPU needed): the pip package's folder.
CUDART_DIR = VENV / "lib" / "python3.11" / "site-packages" / "nvidia" / "cuda_runtime" / "lib"
MODEL = "simple_cnn"
REQUESTS = 200


def perf_analyzer_env() -> dict[str, str]:
    if not PERF_ANALYZER.is_file():
        pytest.fail(f"no perf_analyzer at {PERF_ANALYZER}: run scripts/setup-test-env.sh "
                    f"(it comes with tritonclient 2.50.0)", pytrace=False)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in [str(CUDART_DIR), env.get("LD_LIBRARY_PATH", "")] if p)
    return env


@pytest.fixture(scope="module")
def server(smelt_bin, tmp_path_factory):
    log = tmp_path_factory.mktemp("perf_analyzer") / "server.log"
    server = SmeltServer(smelt_bin, REPO_ROOT / "examples" / "model_repository", log).wait_ready()
    yield server
    server.stop_cleanly()


def successes(server: SmeltServer) -> int:
    client = httpclient.InferenceServerClient(server.url)
    try:
        stats = client.get_inference_statistics(MODEL)["model_stats"]
    finally:
        client.close()
    return sum(int(s["inference_stats"]["success"]["count"]) for s in stats)


# A run that has not finished in this many seconds has hung (see below); a
# normal run of 200 requests takes 1–4 s.
HANG_S = 15
# Runs tried before the test fails: perf_analyzer hangs in 7–15% of runs at
# concurrency 16 (below), so five hangs in a row are about 1 in 10^4 to 10^6.
ATTEMPTS = 5


def run_perf_analyzer(server: SmeltServer, command: list[str]) -> tuple[subprocess.CompletedProcess, int]:
    """Runs perf_analyzer, again when it hangs; returns its run and the server's
    success count from just before that run.

    With --request-count, perf_analyzer hangs now and then, and it is its own
    race. `InferenceProfiler::Profile` starts the workers sending
    (`ChangeConcurrencyLevel`) and only then does `ProfileHelper` discard the
    request records collected so far (`SwapRequestRecords` into an empty
    vector). The workers send exactly the requested count in all, so when any
    request finished in between, the main thread waits forever for a count its
    workers will never reach. Caught in the act: the server had answered all
    200 requests, its connections were idle, and perf_analyzer's main thread was
    sleeping in `Measure` with every worker gone. Of 40 runs of
    `--concurrency-range 16 --request-count 200` over HTTP, 6 hung against this
    server and 3 against the build from before the CPU team (2026-12-07).
    Each hang is reported as a warning with what the server counted.
    """
    for attempt in range(1, ATTEMPTS + 1):
        before = successes(server)
        try:
            done = subprocess.run(command, env=perf_analyzer_env(), capture_output=True, text=True, timeout=HANG_S)
            return done, before
        except subprocess.TimeoutExpired as hang:
            time.sleep(1)  # let the killed run's last answers be counted
            warnings.warn(f"perf_analyzer hung for {HANG_S} s (attempt {attempt} of {ATTEMPTS}: "
                          f"{' '.join(command)}); server successes {before} -> {successes(server)}; "
                          f"output so far: {hang.stdout!r}")
    pytest.fail(f"perf_analyzer hung {ATTEMPTS} times in a row: {' '.join(command)}")


def server_window_successes(output: str) -> int:
    """The successful request count in perf_analyzer's "Server:" section.

    perf_analyzer prints "Successful request count: N" there, or just
    "Request count: 0" when its window saw no request finish.
    """
    server = output.split("Server:", 1)[1]
    if "Successful request count:" in server:
        return int(server.split("Successful request count:")[1].split()[0])
    return int(server.split("Request count:")[1].split()[0])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("concurrency", [1, 4, 16])
def test_perf_analyzer(server, protocol, concurrency, tmp_path):
    url = server.url if protocol == "http" else server.grpc_url
    report = tmp_path / "perf.csv"
    command = [
        str(PERF_ANALYZER), "-m", MODEL, "-u", url, "-i", protocol,
        "--concurrency-range", str(concurrency),
        "--request-count", str(REQUESTS),
        "-f", str(report),
    ]
    done, before = run_perf_analyzer(server, command)
    after = successes(server)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"perf_analyzer exited {done.returncode}:\n{output}\n{server.log()[-3000:]}"
    assert "error" not in output.lower(), output

    rows = list(csv.DictReader(report.open()))
    assert len(rows) == 1, rows
    row = rows[0]
    assert int(row["Concurrency"]) == concurrency
    assert float(row["Inferences/Second"]) > 0, row
    assert float(row["p50 latency"]) > 0 and float(row["p99 latency"]) >= float(row["p50 latency"]), row

    # What perf_analyzer counted on its side and read from the server's
    # statistics, and what the statistics grew by, are consistent.
    client_count = int(output.split("Request count:")[1].split()[0])
    assert client_count == REQUESTS, output
    server_count = server_window_successes(output)
    # perf_analyzer's server reading covers its measurement window only: it takes
    # the window's first statistics snapshot after its worker threads have started
    # sending, so on a busy machine the window misses however many requests were
    # answered before that snapshot (113 of 200 in one CI run). Only the bound is
    # certain; the count taken after perf_analyzer exits must be exact.
    assert 0 <= server_count <= REQUESTS, output
    assert after - before == REQUESTS, f"statistics grew by {after - before}, perf_analyzer sent {REQUESTS}"
