#!/usr/bin/env python3
"""Measures `smelt serve` with NVIDIA's perf_analyzer and rewrites the server
section of docs/BENCHMARKS.md.

Models: the bundled simple_cnn and ResNet-50 (build/models/resnet50.onnx, made
by scripts/setup-test-env.sh), served from a temporary model repository by one
`smelt serve` on free loopback ports. For each model, protocol (HTTP, gRPC) and
concurrency (1, 4, 16) perf_analyzer measures in time windows until three in a
row agree within --stability-percentage; the throughput and the p50 / p99
latencies of those windows go in the table.

Only the text between `<!-- server:begin -->` and `<!-- server:end -->` is
rewritten; the file is created with both sections' markers if it is missing.

    .venv/bin/python scripts/bench_server.py            # everything, ~5 min
    .venv/bin/python scripts/bench_server.py --quick    # simple_cnn only, short windows
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV = REPO_ROOT / ".venv"
PERF_ANALYZER = VENV / "bin" / "perf_analyzer"
CUDART_DIR = VENV / "lib" / "python3.11" / "site-packages" / "nvidia" / "cuda_runtime" / "lib"
DOC = REPO_ROOT / "docs" / "BENCHMARKS.md"
BEGIN, END = "<!-- server:begin -->", "<!-- server:end -->"
CPU_BEGIN, CPU_END = "<!-- cpu:begin -->", "<!-- cpu:end -->"
CONCURRENCIES = (1, 4, 16)
PROTOCOLS = ("http", "grpc")
# --stability-percentage of the second try when a run finds no stable windows.
LOOSE_STABILITY = 50

RESNET_CONFIG = """name: "resnet50"
backend: "smelt"
max_batch_size: 8
input [ { name: "input", data_type: TYPE_FP32, dims: [ 3, 224, 224 ] } ]
output [ { name: "logits", data_type: TYPE_FP32, dims: [ 1000 ] } ]
instance_group [ { count: 1, kind: KIND_CPU } ]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def busiest_processes(count: int = 5) -> list[str]:
    """The processes using the most CPU right now (other than this one), to say
    how busy the machine was."""
    try:
        done = subprocess.run(["ps", "-eo", "pcpu,comm", "--sort=-pcpu"], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    lines = [line.strip() for line in done.stdout.splitlines()[1:] if line.strip()]
    return lines[:count]


def make_repository(folder: Path, models_dir: Path, with_resnet: bool) -> list[str]:
    shutil.copytree(REPO_ROOT / "examples" / "model_repository" / "simple_cnn", folder / "simple_cnn")
    models = ["simple_cnn"]
    if with_resnet:
        resnet = models_dir / "resnet50.onnx"
        if not resnet.is_file():
            sys.exit(f"{resnet} is missing: run scripts/setup-test-env.sh (tools/gen_models.py makes it)")
        (folder / "resnet50" / "1").mkdir(parents=True)
        os.symlink(resnet.resolve(), folder / "resnet50" / "1" / "model.onnx")
        (folder / "resnet50" / "config.pbtxt").write_text(RESNET_CONFIG)
        models.append("resnet50")
    return models


class Server:
    def __init__(self, binary: Path, repository: Path, log: Path, threads: int | None):
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.command = [str(binary), "serve", "--model-repository", str(repository),
                        "--http-address", "127.0.0.1", "--grpc-address", "127.0.0.1",
                        "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
                        "--metrics-port", str(self.metrics_port)]
        if threads:
            self.command += ["--threads", str(threads)]
        self.log = open(log, "w")
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.http_port}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"smelt serve exited with {self.process.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        sys.exit(f"smelt serve was not ready after {timeout} s; see {self.log.name}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def run_perf_analyzer(model: str, protocol: str, concurrency: int, url: str, interval_ms: int,
                      stability: int, max_trials: int, workdir: Path) -> dict:
    report = workdir / f"{model}-{protocol}-{concurrency}.csv"
    command = [str(PERF_ANALYZER), "-m", model, "-u", url, "-i", protocol,
               "--concurrency-range", str(concurrency),
               "--measurement-interval", str(interval_ms),
               "--stability-percentage", str(stability),
               "--max-trials", str(max_trials),
               "-f", str(report)]
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in [str(CUDART_DIR), env.get("LD_LIBRARY_PATH", "")] if p)
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    took = time.monotonic() - started
    shown = " ".join(shlex.quote(c) for c in command).replace(str(report), f"{model}-{protocol}-{concurrency}.csv")
    shown = shown.replace(str(PERF_ANALYZER), "perf_analyzer")
    result = {"model": model, "protocol": protocol, "concurrency": concurrency, "command": shown,
              "seconds": took, "ok": False}
    output = done.stdout + done.stderr
    if done.returncode != 0 or not report.is_file():
        last = [line for line in output.splitlines() if line.strip()][-3:]
        result["error"] = f"exit {done.returncode}: " + " | ".join(last)
        return result
    row = next(csv.DictReader(report.open()))
    result.update(ok=True, throughput=float(row["Inferences/Second"]), p50_ms=float(row["p50 latency"]) / 1000,
                  p99_ms=float(row["p99 latency"]) / 1000)
    return result


def section(results: list[dict], meta: dict) -> str:
    lines = [
        "## Server (`smelt serve` under perf_analyzer)",
        "",
        f"Measured {meta['date']} by `scripts/bench_server.py` on {meta['cpu']} ({meta['cores']} cores), "
        f"{meta['smelt']} serving on loopback, perf_analyzer (tritonclient 2.50.0) on the same machine "
        f"(so the client's own CPU use competes with the server's).",
        "",
        f"Load average (1 / 5 / 15 min) before: {meta['load_before']}; after: {meta['load_after']}.",
    ]
    if meta["busiest"]:
        lines += ["Busiest processes when the run started (%CPU, command): "
                  + "; ".join(f"`{p}`" for p in meta["busiest"]) + "."]
    lines += [
        "",
        "One request is one image (batch 1). Throughput in inferences per second; latencies as perf_analyzer "
        "reports them from the client, over the stable measurement windows.",
        "",
        "| model | protocol | concurrency | throughput (infer/s) | p50 latency (ms) | p99 latency (ms) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        if r["ok"]:
            mark = " *" if r.get("loose") else ""
            lines.append(f"| {r['model']} | {r['protocol'].upper()} | {r['concurrency']} | {r['throughput']:.1f}{mark} "
                         f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
        else:
            lines.append(f"| {r['model']} | {r['protocol'].upper()} | {r['concurrency']} | failed | | |")
    if any(r.get("loose") for r in results):
        lines += ["", f"\\* no three windows in a row agreed within {meta['stability']}%; measured again with "
                  f"--stability-percentage {LOOSE_STABILITY} (the command is listed twice below)."]
    failures = [r for r in results if not r["ok"]]
    if failures:
        lines += ["", "Failed runs (perf_analyzer's last lines):", ""]
        lines += [f"- {r['model']} {r['protocol']} c{r['concurrency']}: {r['error']}" for r in failures]
    lines += [
        "",
        "For comparison, the real Triton server (2.51.0, ONNX Runtime with 2 threads) served ResNet-50 at "
        "34.3 infer/s over HTTP at concurrency 1 (p50 27.6 ms, p99 47.4 ms) on this kind of machine.",
        "",
        "Commands (ports are picked free at run time; the server: `" + meta["server_command"] + "`):",
        "",
        "```sh",
        f"export LD_LIBRARY_PATH={CUDART_DIR.relative_to(REPO_ROOT)}",
    ]
    lines += meta["commands"]
    lines += ["```", ""]
    return "\n".join(lines)


def write_doc(text: str) -> None:
    if DOC.is_file():
        doc = DOC.read_text()
    else:
        doc = f"# Benchmarks\n\n{CPU_BEGIN}\n{CPU_END}\n\n{BEGIN}\n{END}\n"
    if BEGIN not in doc or END not in doc:
        doc = doc.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smelt-bin", type=Path, default=REPO_ROOT / "target" / "release" / "smelt")
    parser.add_argument("--models-dir", type=Path, default=REPO_ROOT / "build" / "models")
    parser.add_argument("--measurement-interval", type=int, default=2000, help="ms per window (small model)")
    parser.add_argument("--resnet-measurement-interval", type=int, default=4000, help="ms per window (ResNet-50)")
    parser.add_argument("--stability-percentage", type=int, default=15)
    parser.add_argument("--max-trials", type=int, default=8)
    parser.add_argument("--threads", type=int, help="--threads for smelt serve (default: one per core)")
    parser.add_argument("--quick", action="store_true", help="simple_cnn only, 1 s windows (a smoke run)")
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing the doc")
    args = parser.parse_args()
    if not args.smelt_bin.is_file():
        sys.exit(f"no smelt binary at {args.smelt_bin}: cargo build --release -p smelt")
    if not PERF_ANALYZER.is_file():
        sys.exit(f"no perf_analyzer at {PERF_ANALYZER}: run scripts/setup-test-env.sh")

    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_before": load_average(),
        "busiest": busiest_processes(),
    }
    smelt_version = subprocess.run([str(args.smelt_bin), "--version"], capture_output=True, text=True)
    meta["smelt"] = smelt_version.stdout.strip() or "smelt"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT)
    if commit.returncode == 0:
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=REPO_ROOT).stdout.strip()
        meta["smelt"] += f" (built from commit {commit.stdout.strip()}{' with uncommitted changes' if dirty else ''})"

    results, commands = [], []
    meta["stability"] = args.stability_percentage
    with tempfile.TemporaryDirectory(prefix="smelt-bench-") as tmp:
        workdir = Path(tmp)
        models = make_repository(workdir / "repository", args.models_dir, with_resnet=not args.quick)
        server = Server(args.smelt_bin, workdir / "repository", workdir / "server.log", args.threads)
        meta["server_command"] = " ".join(
            ["smelt serve", "--model-repository", "REPOSITORY"] + server.command[4:])
        try:
            server.wait_ready()
            for model in models:
                interval = args.resnet_measurement_interval if model == "resnet50" else args.measurement_interval
                if args.quick:
                    interval = 1000
                for protocol in PROTOCOLS:
                    port = server.http_port if protocol == "http" else server.grpc_port
                    for concurrency in CONCURRENCIES:
                        r = run_perf_analyzer(model, protocol, concurrency, f"127.0.0.1:{port}", interval,
                                              args.stability_percentage, args.max_trials, workdir)
                        if not r["ok"] and "stable" in r["error"]:
                            # A busy machine: take looser windows rather than nothing, and say so.
                            commands.append(r["command"])
                            r = run_perf_analyzer(model, protocol, concurrency, f"127.0.0.1:{port}", interval,
                                                  LOOSE_STABILITY, args.max_trials, workdir)
                            r["loose"] = True
                        shown = (f"{r['throughput']:.1f} infer/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms"
                                 if r["ok"] else r["error"])
                        print(f"{model} {protocol} c{concurrency}: {shown} ({r['seconds']:.0f} s)", flush=True)
                        results.append(r)
                        commands.append(r["command"])
        finally:
            server.stop()
    meta["load_after"] = load_average()
    meta["commands"] = commands
    text = section(results, meta)
    if args.no_write:
        print(text)
    else:
        write_doc(text)
        print(f"wrote the server section of {DOC}")
    if any(not r["ok"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
