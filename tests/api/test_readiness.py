"""Liveness and readiness: /health/live answers at once, /health/ready (and everything that
needs the index) only once the index is loaded in the background."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from index.protocol import IndexStoreError
from rag.embedding import Embedder
from rag.pipeline import Pipeline
from rag.settings import Settings

LOAD_TIMEOUT_S = 120.0


@pytest.fixture
def settings(sample_pipeline: Pipeline, tmp_path: Path) -> Settings:
    """Settings over a private copy of the sample index (loading it embeds nothing)."""
    index_dir = tmp_path / "index"
    shutil.copytree(sample_pipeline.settings.index_dir, index_dir, symlinks=True)
    return Settings(index_dir=index_dir, api_key=None)


def test_ready_only_once_the_index_is_loaded(
    settings: Settings, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    loading = threading.Event()
    may_finish = threading.Event()
    open_pipeline = Pipeline.open

    def slow_open(settings: Settings) -> Pipeline:
        loading.set()
        assert may_finish.wait(LOAD_TIMEOUT_S), "the test never let the index finish loading"
        return open_pipeline(settings, embedder)

    monkeypatch.setattr(Pipeline, "open", slow_open)
    app = create_app(settings, load_in_background=True)

    with TestClient(app, client=("127.0.0.1", 40000)) as client:
        assert loading.wait(LOAD_TIMEOUT_S)
        while_loading = {
            "live": client.get("/health/live"),
            "ready": client.get("/health/ready"),
            "ask": client.post("/ask", json={"question": "What aid did Macron commit?"}),
            "health": client.get("/health"),
            "metrics": client.get("/metrics"),
            "page": client.get("/"),
        }
        may_finish.set()
        ready = _wait_until_ready(client)
        after = {
            "live": client.get("/health/live"),
            "ask": client.post("/ask", json={"question": "What aid did Macron commit?"}),
            "health": client.get("/health"),
        }

    assert while_loading["live"].status_code == 200
    assert while_loading["live"].json() == {"status": "alive"}
    assert while_loading["ready"].status_code == 503
    assert while_loading["ready"].json() == {
        "status": "loading",
        "detail": "the index is loading; try again shortly",
    }
    for name in ("ask", "health"):
        response = while_loading[name]
        assert response.status_code == 503, name
        assert response.json() == {"detail": "the index is loading; try again shortly"}
        assert response.headers["Retry-After"] == "5"
    assert while_loading["metrics"].status_code == 200  # operators see it load
    assert while_loading["page"].status_code == 200

    assert ready.json() == {"status": "ready", "detail": "the index is loaded"}
    assert [r.status_code for r in after.values()] == [200, 200, 200]
    assert after["health"].json()["articles"] == 3


def test_an_index_that_fails_to_load_is_never_ready(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_open(settings: Settings) -> Pipeline:
        raise IndexStoreError("the index at /srv/secret was built with another model")

    monkeypatch.setattr(Pipeline, "open", broken_open)
    app = create_app(settings, load_in_background=True)

    with TestClient(app) as client:
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while not app.state.load_failed and time.monotonic() < deadline:
            time.sleep(0.05)
        live = client.get("/health/live")
        ready = client.get("/health/ready")
        ask = client.get("/ask", params={"q": "What aid did Macron commit?"})

    assert live.status_code == 200
    assert (ready.status_code, ready.json()["status"]) == (503, "failed")
    assert ask.status_code == 503
    assert ask.json() == {"detail": "the index could not be loaded; see the service log"}
    assert "/srv/secret" not in ready.text + ask.text


def test_a_service_given_its_pipeline_is_ready_at_once(client: TestClient) -> None:
    response = client.get("/health/ready")

    assert (response.status_code, response.json()["status"]) == (200, "ready")


def _wait_until_ready(client: TestClient) -> httpx.Response:
    deadline = time.monotonic() + LOAD_TIMEOUT_S
    while time.monotonic() < deadline:
        response = client.get("/health/ready")
        if response.status_code == 200:
            return response
        assert response.json()["status"] == "loading"
        time.sleep(0.05)
    raise TimeoutError("the index did not load")
