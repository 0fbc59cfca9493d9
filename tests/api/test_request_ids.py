"""Request ids (``X-Request-ID``) in responses and in every log line about a request; the
access log; what the log keeps out (questions and article text) unless told otherwise."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.logs import RequestIdFilter, make_formatter
from rag.pipeline import Pipeline
from rag.settings import Settings

API_KEY = "request-id-key-5e1d"
QUESTION = "What aid did Macron commit?"
GENERATED = re.compile(r"[0-9a-f]{32}")


class CapturedLog:
    """The service log as its handler writes it, in one of the two formats."""

    def __init__(self, log_format: Literal["text", "json"]) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(make_formatter(log_format))
        self.handler.addFilter(RequestIdFilter())

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict[str, Any]]:
        """The service's JSON lines, parsed (without the test client's own)."""
        parsed = [json.loads(line) for line in self.text.splitlines()]
        return [record for record in parsed if not record["logger"].startswith("httpx")]

    def api_records(self) -> list[dict[str, Any]]:
        """The lines of the service's own loggers (``api.*``)."""
        return [record for record in self.records() if record["logger"].startswith("api.")]


@pytest.fixture
def log_lines() -> Iterator[CapturedLog]:
    """JSON log lines of everything logged at INFO and above during the test."""
    yield from _capture("json")


@pytest.fixture
def text_log() -> Iterator[CapturedLog]:
    yield from _capture("text")


def _capture(log_format: Literal["text", "json"]) -> Iterator[CapturedLog]:
    captured = CapturedLog(log_format)
    root = logging.getLogger()
    level = root.level
    root.addHandler(captured.handler)
    root.setLevel(logging.INFO)
    try:
        yield captured
    finally:
        root.removeHandler(captured.handler)
        root.setLevel(level)


def service(pipeline: Pipeline, **options: Any) -> TestClient:
    """A writable service over ``pipeline``, with more settings from ``options``."""
    settings = Settings(
        index_dir=pipeline.settings.index_dir, api_key=SecretStr(API_KEY), **options
    )
    return TestClient(create_app(settings, pipeline))


def test_a_sane_client_id_comes_back_and_others_get_a_new_one(client: TestClient) -> None:
    given = client.get("/health", headers={"X-Request-ID": "req-42.a:b"})
    uuid = "5f0c3b36-7a2d-4c52-9f2e-1c0f1b2a3d4e"
    as_uuid = client.get("/health", headers={"X-Request-ID": uuid})
    none = [client.get("/health"), client.get("/health")]
    insane = [
        client.get("/health", headers={"X-Request-ID": value})
        for value in ("two words", "x" * 129, "<script>", "-starts-with-a-dash")
    ]

    assert given.headers["X-Request-ID"] == "req-42.a:b"
    assert as_uuid.headers["X-Request-ID"] == uuid
    for response in [*none, *insane]:
        assert response.status_code == 200
        assert GENERATED.fullmatch(response.headers["X-Request-ID"]), response.headers
    assert none[0].headers["X-Request-ID"] != none[1].headers["X-Request-ID"]


def test_every_log_line_about_a_request_carries_its_id(
    writable_pipeline: Pipeline, log_lines: CapturedLog, festival: dict[str, Any]
) -> None:
    with service(writable_pipeline) as writer:
        added = writer.post(
            "/articles",
            json=festival,
            headers={"X-API-Key": API_KEY, "X-Request-ID": "write-1"},
        )
        asked = writer.post("/ask", json={"question": QUESTION}, headers={"X-Request-ID": "ask-1"})
        unnamed = writer.get(f"/articles/{festival['id']}")

    assert (added.status_code, asked.status_code, unnamed.status_code) == (201, 200, 200)
    by_id: dict[str, list[dict[str, Any]]] = {}
    for record in log_lines.records():
        by_id.setdefault(record["request_id"], []).append(record)
    # the write logs what it added, then the access line: both with the request's id
    # (as does any library that logs while the request is handled)
    write = [r for r in by_id["write-1"] if r["logger"].startswith("api.")]
    assert [r["logger"] for r in write] == ["api.routes", "api.access"], write
    assert write[0]["articles_added"] == [festival["id"]]
    assert write[0]["chunks_added"] == added.json()["added"][0]["chunks"]
    assert write[1] | {"duration_ms": 0} == write[1] | {
        "method": "POST",
        "path": "/articles",
        "route": "/articles",
        "status": 201,
        "duration_ms": 0,
    }
    assert write[1]["duration_ms"] > 0
    # /ask says whether it answered
    (ask,) = [r for r in by_id["ask-1"] if r["logger"].startswith("api.")]
    assert (ask["logger"], ask["path"], ask["status"]) == ("api.access", "/ask", 200)
    assert ask["answered"] is bool(asked.json()["answers"])
    assert "answered" not in write[1]
    # a request without an id gets the generated one that its response names
    generated = unnamed.headers["X-Request-ID"]
    assert [r.get("path") for r in by_id[generated]] == [f"/articles/{festival['id']}"]
    for record in log_lines.records():
        assert {"time", "level", "logger", "request_id", "message"} <= record.keys()


def test_questions_and_article_text_stay_out_of_the_log_by_default(
    writable_pipeline: Pipeline, log_lines: CapturedLog, festival: dict[str, Any]
) -> None:
    with service(writable_pipeline) as writer:
        writer.post("/articles", json=festival, headers={"X-API-Key": API_KEY})
        writer.post("/ask", json={"question": QUESTION})
        writer.get("/ask", params={"q": "Where did the harbour festival take place?"})

    logged = json.dumps(log_lines.records()).lower()
    assert log_lines.api_records(), "nothing was logged"
    for secret in (QUESTION, "harbour festival", "Macron", festival["title"], "Port Ellis"):
        assert secret.lower() not in logged, secret
    paths = [r["path"] for r in log_lines.records() if r["logger"] == "api.access"]
    assert paths == ["/articles", "/ask", "/ask"]  # no query string


def test_with_log_questions_the_question_and_titles_are_logged(
    writable_pipeline: Pipeline, log_lines: CapturedLog, festival: dict[str, Any]
) -> None:
    with service(writable_pipeline, log_questions=True) as writer:
        writer.post("/articles", json=festival, headers={"X-API-Key": API_KEY})
        writer.post("/ask", json={"question": QUESTION})

    added, add_access, ask_access = log_lines.api_records()
    assert added["titles"] == [festival["title"]]
    assert "question" not in add_access
    assert ask_access["question"] == QUESTION


def test_text_lines_carry_the_id_and_cannot_be_forged(
    client: TestClient, text_log: CapturedLog
) -> None:
    response = client.get("/articles/x%0A2026-01-01 INFO forged", headers={"X-Request-ID": "t-1"})

    (line,) = [line for line in text_log.text.splitlines() if " api.access " in line]
    expected = f"[t-1] GET /articles/x\\n2026-01-01 INFO forged {response.status_code} "
    assert f" INFO api.access {expected}" in line


def test_a_500_still_names_its_request(
    sample_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, log_lines: CapturedLog
) -> None:
    def broken_ask(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(sample_pipeline, "ask", broken_ask)
    app = create_app(Settings(api_key=None), sample_pipeline)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(
            "/ask", json={"question": QUESTION}, headers={"X-Request-ID": "boom-1"}
        )

    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "boom-1"
    access = [r for r in log_lines.api_records() if r["logger"] == "api.access"]
    assert [(r["request_id"], r["status"]) for r in access] == [("boom-1", 500)]
