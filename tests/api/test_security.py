"""The security model: read-only without a key, CORS closed unless configured, the
environment factory used by worker processes, and errors that reveal no internals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app, create_app_from_env
from rag.embedding import Embedder
from rag.pipeline import Pipeline
from rag.settings import Settings

PAGE = "https://pages.example.org"
ELSEWHERE = "https://evil.example.com"


def preflight(client: TestClient, origin: str) -> Any:
    """What a browser asks before a cross-origin write with the key."""
    return client.options(
        "/articles",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-api-key",
        },
    )


def test_cors_is_closed_by_default(client: TestClient) -> None:
    answer = preflight(client, ELSEWHERE)
    read = client.get("/health", headers={"Origin": ELSEWHERE})

    assert answer.status_code == 405
    for response in (answer, read):
        assert not any(h.startswith("access-control-") for h in response.headers), response.headers


def test_cors_lets_in_only_the_configured_origins(
    sample_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_CORS_ORIGINS", f" {PAGE} , https://other.example.org")
    settings = Settings(index_dir=sample_pipeline.settings.index_dir)
    with TestClient(create_app(settings, sample_pipeline)) as client:
        allowed = preflight(client, PAGE)
        refused = preflight(client, ELSEWHERE)
        read = client.get("/health", headers={"Origin": PAGE})

    assert settings.cors_origins == [PAGE, "https://other.example.org"]
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == PAGE
    assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in allowed.headers
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    assert read.headers["access-control-allow-origin"] == PAGE


@pytest.mark.parametrize(("key", "status"), [(None, 403), ("s3cret-key", 401)])
def test_the_worker_factory_reads_the_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, key: str | None, status: int
) -> None:
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path))
    monkeypatch.delenv("RAG_API_KEY", raising=False)
    if key is not None:
        monkeypatch.setenv("RAG_API_KEY", key)
    client = TestClient(create_app_from_env())  # not started: no model, no index needed

    response = client.post(
        "/articles", json={"title": "T", "text": "B."}, headers={"X-API-Key": "x"}
    )

    assert response.status_code == status  # 403: read-only, 401: wrong key


def test_a_key_with_non_ascii_bytes_is_a_plain_401(
    writer: TestClient, festival: dict[str, Any]
) -> None:
    response = writer.post(
        "/articles", json=festival, headers={"X-API-Key": "cl\u00e9".encode("latin-1")}
    )

    assert response.status_code == 401
    assert writer.get("/articles/harbour-festival").status_code == 404


def test_a_damaged_index_is_503_without_paths_or_tracebacks(
    writable_pipeline: Pipeline,
    writer_settings: Settings,
    embedder: Embedder,
    key: dict[str, str],
    festival: dict[str, Any],
) -> None:
    index_dir = writer_settings.index_dir
    with TestClient(create_app(writer_settings, writable_pipeline)) as service:
        assert service.get("/health").status_code == 200
        # another worker writes and merges a new base segment, whose vectors then get damaged
        other_worker = Pipeline.open(writer_settings, embedder)
        other_worker.delete(service.get("/articles").json()["articles"][0]["id"])
        assert other_worker.store.merge(force=True)
        segments = index_dir / "current" / "segments"
        vectors = segments / (segments / "CURRENT").read_text() / "vectors.faiss"
        vectors.write_bytes(vectors.read_bytes()[:100])

        responses = [
            service.get("/health"),
            service.get("/articles"),
            service.post("/ask", json={"question": "What aid did Macron commit?"}),
            service.post("/articles", json=festival, headers=key),
        ]

    for response in responses:
        assert response.status_code == 503, response.text
        assert response.json() == {
            "detail": "the index cannot be read right now; see the service log"
        }
        for secret in (str(index_dir), "vectors.faiss", "Traceback", "rebuild"):
            assert secret not in response.text
