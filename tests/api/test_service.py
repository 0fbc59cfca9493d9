"""GET /health, the OpenAPI docs, the web form's files, and startup without a pipeline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from index.store import FORMAT_VERSION
from rag.embedding import Embedder
from rag.pipeline import Pipeline
from rag.reader.model import reader_fingerprint
from rag.settings import Settings


def test_health_reports_model_and_counts(client: TestClient) -> None:
    articles = client.get("/articles").json()["articles"]

    health = client.get("/health").json()

    assert health["status"] == "ok"
    assert health["model_name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert health["articles"] == 3
    assert health["chunks"] == sum(a["chunks"] for a in articles)
    assert health["format_version"] == FORMAT_VERSION
    assert health["writable"] is False
    assert health["answerer"] == "reader"
    assert health["reader"] == reader_fingerprint(Settings().reader_path)
    assert len(health["reader"]) == 16
    assert "index_dir" not in health


def test_openapi_documents_every_endpoint(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()

    assert {path: set(methods) for path, methods in schema["paths"].items()} == {
        "/ask": {"get", "post"},
        "/articles": {"get", "post"},
        "/articles/{article_id}": {"get", "delete"},
        "/health": {"get"},
    }
    upload = schema["paths"]["/articles"]["post"]["requestBody"]["content"]
    assert set(upload) == {"application/json", "multipart/form-data"}


def test_docs_page_loads_swagger_ui_from_the_service_not_a_cdn(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+)""", page.text)
    assert assets and all(a.startswith("/docs-assets/") for a in assets), assets
    for asset in assets:
        assert client.get(asset).status_code == 200
    assert "cdn" not in page.text.lower()


def test_web_form_is_served_with_a_strict_content_security_policy(client: TestClient) -> None:
    page = client.get("/")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    for asset in ("/static/app.js", "/static/style.css"):
        assert asset in page.text
        assert client.get(asset).status_code == 200
    assert "http" not in page.text, "the page must not load anything from another host"


def test_without_a_pipeline_the_sample_index_is_built_at_startup(
    embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_pipeline = Pipeline.open

    def open_with_the_shared_model(settings: Settings) -> Pipeline:
        return open_pipeline(settings, embedder)

    monkeypatch.setattr(Pipeline, "open", open_with_the_shared_model)
    app = create_app(Settings(index_dir=tmp_path / "index"))

    with TestClient(app) as client:
        health = client.get("/health").json()

    assert (health["status"], health["articles"]) == ("ok", 3)
