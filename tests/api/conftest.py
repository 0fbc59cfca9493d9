"""Clients for the HTTP API: the real app over the real model and index, in process or
served by ``rag serve`` in a child process."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from bench.http_latency import Served, start_service, stop_services
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
        served = start_service(
            tmp_path, index_dir, *args, env={"RAG_TORCH_THREADS": "1", **(env or {})}
        )
        started.append(served)
        served.wait_ready(READY_TIMEOUT_S)
        return served

    try:
        yield start
    finally:
        stop_services(started)
