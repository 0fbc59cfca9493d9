"""Latency and throughput of ``POST /ask`` over real HTTP, on loopback only.

Starts ``rag serve`` on a free 127.0.0.1 port over a fresh index of the sample articles
(in a temporary directory; other ``RAG_*`` settings pass through, e.g. RAG_TORCH_THREADS),
waits for ``/health``, then measures a bounded number of requests: one client in sequence,
then several clients at once. Prints a table.

    .venv/bin/python bench/http_latency.py [--requests 100] [--clients 8] [--concurrent 200]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

QUESTIONS = [
    "What aid did Macron commit?",
    "How many Ukrainian soldiers is France training?",
    "Which Russian factories does Zelensky want to strike?",
    "What did Zelensky tell EU leaders in Brussels?",
    "What is the boiling point of liquid nitrogen?",
]
WARM_UP = 5
TIMEOUT_S = 30.0
STARTUP_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Run:
    """What one scenario measured."""

    name: str
    latencies_ms: list[float]
    server_ms: list[float]
    wall_s: float

    def row(self) -> str:
        p95 = statistics.quantiles(self.latencies_ms, n=100)[94]
        return (
            f"| {self.name} | {len(self.latencies_ms)} | {statistics.median(self.latencies_ms):.1f}"
            f" | {p95:.1f} | {statistics.median(self.server_ms):.1f}"
            f" | {len(self.latencies_ms) / self.wall_s:.1f} |"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Served:
    """A ``rag serve`` child process on a loopback port, logging to a file."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def wait_ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """Return once it answers ``/health/ready`` (its index loaded)."""
        wait_until_healthy(self.url, self.process, "/health/ready", timeout_s)

    def stop(self, timeout_s: float = 120.0) -> int:
        """SIGTERM, then the exit code (SIGKILL if it does not exit in time)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def start_service(
    log_dir: Path, index_dir: Path, *args: str, env: Mapping[str, str] | None = None
) -> Served:
    """``rag serve ARGS...`` in a child process on a free loopback port over
    ``index_dir``, with extra environment variables, logging to ``log_dir`` (not waited
    for: see :meth:`Served.wait_ready`)."""
    port = free_port()
    log = log_dir / f"rag-serve-{port}.log"
    environment = {
        key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"
    }
    environment.update({"RAG_INDEX_DIR": str(index_dir), **(env or {})})
    command = [str(Path(sys.executable).with_name("rag")), "serve", "--host", "127.0.0.1"]
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "--port", str(port), *args],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return Served(f"http://127.0.0.1:{port}", process, log)


def stop_services(services: Sequence[Served], show_log: bool = True) -> None:
    """Stop the services still running (and print the tail of each one's log)."""
    for served in services:
        if served.process.poll() is None:
            served.stop()
        if show_log:
            sys.stderr.write(f"--- {served.log.name} (tail)\n{served.log_text()[-3000:]}\n")


@contextmanager
def running_service(index_dir: Path, environment: dict[str, str] | None = None) -> Iterator[str]:
    """``rag serve`` in a child process on loopback (with these extra environment
    variables); yields its base url once it is ready (its log is printed if it fails)."""
    with tempfile.TemporaryDirectory() as log_dir:
        served = start_service(Path(log_dir), index_dir, env=environment)
        failed = True
        try:
            served.wait_ready()
            yield served.url
            failed = False
        finally:
            stop_services([served], show_log=failed)


def wait_until_healthy(
    url: str,
    process: subprocess.Popen[bytes],
    path: str = "/health",
    timeout_s: float = STARTUP_TIMEOUT_S,
) -> None:
    """Return once ``GET {url}{path}`` answers 200; fail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with code {process.returncode}")
        try:
            if httpx.get(f"{url}{path}", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"the service did not answer {path} within {timeout_s:.0f} s")


def ask(client: httpx.Client, number: int) -> tuple[float, float]:
    """One request: (client-side latency, server-reported took_ms), in milliseconds."""
    question = QUESTIONS[number % len(QUESTIONS)]
    started = time.perf_counter()
    response = client.post("/ask", json={"question": question, "top_k": 5})
    latency = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return latency, float(response.json()["took_ms"])


def measure(url: str, name: str, requests: int, clients: int) -> Run:
    """``requests`` asks spread over ``clients`` keep-alive connections, all at once."""

    def worker(numbers: range) -> list[tuple[float, float]]:
        with httpx.Client(base_url=url, timeout=TIMEOUT_S) as client:
            return [ask(client, n) for n in numbers]

    shares = [range(i, requests, clients) for i in range(clients)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = [pair for share in pool.map(worker, shares) for pair in share]
    wall_s = time.perf_counter() - started
    return Run(name, [r[0] for r in results], [r[1] for r in results], wall_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100, help="sequential requests")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--concurrent", type=int, default=200, help="requests, concurrent run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, running_service(Path(tmp) / "index") as url:
        measure(url, "warm-up", WARM_UP, 1)
        runs = [
            measure(url, "1 client, sequential", args.requests, 1),
            measure(url, f"{args.clients} clients, concurrent", args.concurrent, args.clients),
        ]
    print(f"POST /ask over HTTP on loopback · {os.cpu_count()} CPUs · sample articles")
    print("| scenario | requests | p50 ms | p95 ms | server p50 ms | requests/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for run in runs:
        print(run.row())


if __name__ == "__main__":
    main()
