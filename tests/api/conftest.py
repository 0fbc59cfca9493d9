"""Clients for the HTTP API: the real app over the real model and index, in process or
served by ``rag serve`` in a child process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from bench.http_latency import free_port, wait_until_healthy
from rag.pipeline import Pipeline
from rag.settings import Settings

API_KEY = "test-key-4f9c2a"


@pytest.fixture(scope="module")
def client(sample_pipeline: Pipeline) -> Iterator[TestClient]:
    """A read-only service (no RAG_API_KEY) over the three sample articles."""
    settings = Settings(index_dir=sample_pipeline.settings.index_dir, api_key=None)
    with TestClient(create_app(settings, sample_pipeline)) as test_client:
        yield test_client


@pytest.fixture
def writer_settings(writable_pipeline: Pipeline) -> Settings:
    return Settings(index_dir=writable_pipeline.settings.index_dir, api_key=SecretStr(API_KEY))


@pytest.fixture
def writer(writable_pipeline: Pipeline, writer_settings: Settings) -> Iterator[TestClient]:
    """A writable service (RAG_API_KEY set) over a private copy of the sample index."""
    with TestClient(create_app(writer_settings, writable_pipeline)) as test_client:
        yield test_client


@pytest.fixture
def key() -> dict[str, str]:
    """The headers that authorise a write on ``writer``."""
    return {"X-API-Key": API_KEY}


@pytest.fixture
def festival() -> dict[str, Any]:
    """An article unlike the samples, to add, find and delete."""
    return {
        "id": "harbour-festival",
        "title": "Harbour festival draws record crowds",
        "text": "The annual harbour festival in Port Ellis drew 48,000 visitors on Saturday, "
        "the organisers said. Fishing boats were decorated with lanterns and a brass band "
        "played until midnight. The mayor, Ines Calder, said the town would extend the "
        "festival to three days next year.",
        "url": "https://example.org/port-ellis/harbour-festival",
        "source": "Port Ellis Gazette",
        "published": "2024-08-04",
    }


READY_TIMEOUT_S = 240.0
"""How long a `rag serve` child may take to answer /health/ready (model loading on a
busy 2-core machine)."""


@dataclass
class Served:
    """A ``rag serve`` child process on a loopback port, logging to a file."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
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


@pytest.fixture
def sample_index_copy(sample_pipeline: Pipeline, tmp_path: Path) -> Path:
    """A private copy of the sample index directory (nothing opens it in this process)."""
    index_dir = tmp_path / "served-index"
    shutil.copytree(sample_pipeline.settings.index_dir, index_dir, symlinks=True)
    return index_dir


@pytest.fixture
def rag_serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start ``rag serve ARGS...`` over an index directory, with extra environment
    variables, and wait until it is ready; every child is stopped at the end."""
    started: list[Served] = []

    def start(index_dir: Path, *args: str, env: Mapping[str, str] | None = None) -> Served:
        port = free_port()
        log = tmp_path / f"rag-serve-{port}.log"
        environment = {
            key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"
        }
        environment.update(
            {"RAG_INDEX_DIR": str(index_dir), "RAG_TORCH_THREADS": "1", **(env or {})}
        )
        command = [str(Path(sys.executable).with_name("rag")), "serve", "--host", "127.0.0.1"]
        with log.open("wb") as output:
            process = subprocess.Popen(
                [*command, "--port", str(port), *args],
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        served = Served(f"http://127.0.0.1:{port}", process, log)
        started.append(served)
        served.wait_ready()
        return served

    try:
        yield start
    finally:
        for served in started:
            if served.process.poll() is None:
                served.stop()
            sys.stderr.write(f"--- {served.log.name} (tail)\n{served.log_text()[-3000:]}\n")
