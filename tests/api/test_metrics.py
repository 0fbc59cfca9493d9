"""GET /metrics: Prometheus metrics that rise with real requests, and who may read them.

The text is parsed with ``prometheus_client``'s own parser, never matched as strings.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from api.app import create_app
from rag.pipeline import Pipeline
from rag.settings import Settings

API_KEY = "metrics-key-81c3"
LOOPBACK = ("127.0.0.1", 40000)
ELSEWHERE = ("203.0.113.9", 40000)
QUESTIONS = ("What aid did Macron commit?", "What is the boiling point of liquid nitrogen?")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient, **headers: str) -> Samples:
    """Every sample of ``/metrics``, by name and labels."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


@pytest.fixture
def local_writer(writable_pipeline: Pipeline) -> Iterator[TestClient]:
    """A writable service seen from a loopback client."""
    settings = Settings(index_dir=writable_pipeline.settings.index_dir, api_key=SecretStr(API_KEY))
    with TestClient(create_app(settings, writable_pipeline), client=LOOPBACK) as client:
        yield client


def test_metrics_rise_with_questions_writes_and_errors(
    local_writer: TestClient, festival: dict[str, Any]
) -> None:
    key = {"X-API-Key": API_KEY}
    before = scrape(local_writer)

    asked = [
        local_writer.post("/ask", json={"question": QUESTIONS[0]}),
        local_writer.get("/ask", params={"q": QUESTIONS[1]}),
    ]
    added = local_writer.post("/articles", json=festival, headers=key)
    deleted = local_writer.delete(f"/articles/{festival['id']}", headers=key)
    missing = local_writer.get("/no/such/page")
    after = scrape(local_writer)

    assert [r.status_code for r in asked] == [200, 200]
    assert (added.status_code, deleted.status_code, missing.status_code) == (201, 204, 404)

    def rise(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    # requests, by method, route template and status; a made-up path is one label value
    for method, route, status in [
        ("POST", "/ask", "200"),
        ("GET", "/ask", "200"),
        ("POST", "/articles", "201"),
        ("DELETE", "/articles/{article_id}", "204"),
        ("GET", "unmatched", "404"),
    ]:
        labels = {"method": method, "route": route, "status": status}
        assert rise("newsqa_http_requests_total", **labels) == 1, labels
        assert rise("newsqa_http_request_duration_seconds_count", **labels) == 1, labels
        assert rise("newsqa_http_request_duration_seconds_sum", **labels) > 0, labels
    # questions: each answered or abstained; scores only of answered ones
    answered = rise("newsqa_questions_total", outcome="answered")
    abstained = rise("newsqa_questions_total", outcome="abstained")
    assert answered + abstained == 2
    assert answered == sum(1 for r in asked if r.json()["answers"])
    assert rise("newsqa_answer_score_count") == answered
    # every stage of both questions timed
    for stage in ("encode", "retrieve", "read"):
        assert rise("newsqa_question_stage_seconds_count", stage=stage) == 2, stage
        assert rise("newsqa_question_stage_seconds_sum", stage=stage) > 0, stage
    # the write: articles, chunks, throughput, latency by operation
    chunks = added.json()["added"][0]["chunks"]
    assert rise("newsqa_ingest_articles_total") == 1
    assert rise("newsqa_ingest_chunks_total") == chunks > 0
    assert value(after, "newsqa_ingest_chunks_per_second") > 0
    for operation in ("add", "delete"):
        assert rise("newsqa_index_write_duration_seconds_count", operation=operation) == 1
    # the index: the same articles as before, two generations later
    assert value(after, "newsqa_index_generation") == value(before, "newsqa_index_generation") + 2
    assert value(after, "newsqa_index_articles") == value(before, "newsqa_index_articles") == 3
    assert value(after, "newsqa_index_chunks") == value(before, "newsqa_index_chunks") > 0


def test_unreadable_index_errors_are_counted(
    sample_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from index.protocol import IndexStoreError

    def unreadable(*args: object, **kwargs: object) -> None:
        raise IndexStoreError("cannot read index file")

    with TestClient(create_app(Settings(api_key=None), sample_pipeline), client=LOOPBACK) as client:
        before = scrape(client)
        monkeypatch.setattr(sample_pipeline, "articles", unreadable)
        assert client.get("/articles").status_code == 503
        after = scrape(client)

    assert (
        value(after, "newsqa_index_errors_total") == value(before, "newsqa_index_errors_total") + 1
    )
    labels = {"method": "GET", "route": "/articles", "status": "503"}
    assert value(after, "newsqa_http_requests_total", **labels) == 1


@pytest.mark.parametrize(
    ("client_address", "settings", "headers", "status"),
    [
        (LOOPBACK, {}, {}, 200),
        (("::1", 40000), {}, {}, 200),
        (("::ffff:127.0.0.1", 40000), {}, {}, 200),
        (ELSEWHERE, {}, {}, 403),  # no key configured: loopback only
        (ELSEWHERE, {"metrics_public": True}, {}, 200),
        (ELSEWHERE, {"api_key": SecretStr(API_KEY)}, {}, 401),
        (ELSEWHERE, {"api_key": SecretStr(API_KEY)}, {"X-API-Key": "wrong"}, 401),
        (ELSEWHERE, {"api_key": SecretStr(API_KEY)}, {"X-API-Key": API_KEY}, 200),
        (("testclient", 40000), {}, {}, 403),  # a host name is not an address
    ],
)
def test_metrics_are_served_to_loopback_key_holders_or_everyone_when_public(
    sample_pipeline: Pipeline,
    client_address: tuple[str, int],
    settings: dict[str, Any],
    headers: dict[str, str],
    status: int,
) -> None:
    app = create_app(Settings(**{"api_key": None, **settings}), sample_pipeline)
    with TestClient(app, client=client_address) as client:
        response = client.get("/metrics", headers=headers)

    assert response.status_code == status, response.text
    if status != 200:
        assert "RAG_METRICS_PUBLIC" in response.json()["detail"] or status == 401
