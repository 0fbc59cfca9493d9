"""Fuzzing every text input of the HTTP API with arbitrary Unicode, lone surrogates and
control characters included: never a 5xx, always a readable detail, never a change to
the index after a refused write, and never invalid text stored.

Text goes out as a client would send it: JSON with ``\\ud800`` escapes (valid JSON that
is not valid text), query strings and multipart file names percent-encoded or raw.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.articles import SUPPORTED_SUFFIXES
from rag.text import text_problem

ANY_TEXT = st.text(st.characters(), max_size=40)  # every category, surrogates included
QUESTIONS = ANY_TEXT | ANY_TEXT.map(lambda tail: f"What aid did Macron commit? {tail}")
ARTICLE_FIELDS = st.fixed_dictionaries(
    {"title": ANY_TEXT, "text": ANY_TEXT.map(lambda tail: f"The harbour reopened. {tail}")},
    optional={"url": ANY_TEXT, "source": ANY_TEXT, "published": ANY_TEXT},
)
PLAIN = ANY_TEXT.map(lambda text: f"Harbour news {text}\n\nThe harbour reopened on Monday. {text}")
FEED = ARTICLE_FIELDS.map(json.dumps)
FILES = st.one_of(  # (suffix, content): any content in any format, or in its own format
    st.tuples(st.sampled_from(SUPPORTED_SUFFIXES), ANY_TEXT | PLAIN | FEED),
    st.tuples(st.sampled_from([".txt", ".md", ".html"]), PLAIN),
    st.tuples(st.sampled_from([".json", ".jsonl"]), FEED),
)
JSON = {"Content-Type": "application/json"}
READS = settings(max_examples=40, deadline=None)
# the writer serves every example of a test (its index accumulates the accepted writes)
WRITES = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def encode(value: Any) -> bytes:
    """JSON as a hostile client sends it: lone surrogates as ``\\ud800`` escapes."""
    return json.dumps(value).encode()


def index_state(client: TestClient) -> tuple[int, int, int]:
    health = client.get("/health").json()
    return health["generation"], health["articles"], health["chunks"]


def assert_handled(response: Any, *allowed: int) -> None:
    """A status from ``allowed``; a refusal is a readable sentence, no traceback."""
    assert response.status_code in allowed, response.text
    assert "Traceback" not in response.text
    if response.status_code >= 400:
        detail = response.json()["detail"]
        assert isinstance(detail, str) and detail and text_problem(detail) is None


def assert_write_handled(
    writer: TestClient, response: Any, before: tuple[int, int, int], *sent: str | None
) -> None:
    """A write is added (201), only duplicates (200) or refused (422, index unchanged),
    refused when any of ``sent`` is not valid text; whatever was added is valid text."""
    assert_handled(response, 200, 201, 422)
    if any(value is not None and text_problem(value) for value in sent):
        assert response.status_code == 422
    if response.status_code != 201:
        assert index_state(writer) == before
    for added in response.json().get("added", []):
        stored = writer.get(f"/articles/{added['id']}").json()
        assert all(text_problem(v) is None for v in stored.values() if isinstance(v, str))


@READS
@given(question=QUESTIONS, source=st.none() | ANY_TEXT)
def test_any_question_posted_is_answered_or_refused(
    client: TestClient, question: str, source: str | None
) -> None:
    body = {"question": question} | ({} if source is None else {"source": source})

    response = client.post("/ask", content=encode(body), headers=JSON)

    assert_handled(response, 200, 422)
    if text_problem(question) or (source is not None and text_problem(source)):
        assert response.status_code == 422
        assert response.json()["detail"].startswith(("question: ", "source: "))
    if response.status_code == 200:
        assert response.json()["question"] == question.strip()


@READS
@given(question=QUESTIONS, source=st.none() | ANY_TEXT)
def test_any_question_in_a_query_string_is_answered_or_refused(
    client: TestClient, question: str, source: str | None
) -> None:
    # percent-encoded UTF-8 bytes: a surrogate's bytes are not UTF-8 and arrive as U+FFFD
    query = {"q": question} | ({} if source is None else {"source": source})
    url = "/ask?" + "&".join(
        f"{name}={quote(value.encode('utf-8', 'surrogatepass'), safe='')}"
        for name, value in query.items()
    )

    response = client.get(url)

    assert_handled(response, 200, 422)
    arrived = question.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if text_problem(arrived):  # control characters arrive as sent
        assert "q: " in response.json()["detail"]


@WRITES
@given(article=ARTICLE_FIELDS)
def test_any_article_posted_as_json_is_added_or_refused_whole(
    writer: TestClient, key: dict[str, str], article: dict[str, str]
) -> None:
    before = index_state(writer)

    response = writer.post("/articles", content=encode(article), headers={**key, **JSON})

    assert_write_handled(writer, response, before, *article.values())
    if response.status_code == 422:
        assert response.json()["detail"].startswith("nothing was added: record 1: ")


@WRITES
@given(name=ANY_TEXT, file=FILES)
def test_any_file_uploaded_is_added_or_refused(
    writer: TestClient, key: dict[str, str], name: str, file: tuple[str, str]
) -> None:
    before = index_state(writer)
    suffix, content = file
    file_name = f"{name}{suffix}"
    body, content_type = multipart(file_name, content.encode("utf-8", "surrogatepass"))

    response = writer.post("/articles", content=body, headers={**key, "Content-Type": content_type})

    # (the service reads a name that is not UTF-8 as Latin-1, so its surrogates never arrive)
    assert_write_handled(writer, response, before, content)


def multipart(file_name: str, content: bytes) -> tuple[bytes, str]:
    """A form upload of one file in the field ``files``, its name sent as raw UTF-8
    bytes (surrogates too, as ``surrogatepass`` writes them)."""
    boundary = uuid.uuid4().hex
    name = file_name.encode("utf-8", "surrogatepass")
    for special, escaped in ((b'"', b"%22"), (b"\r", b"%0D"), (b"\n", b"%0A")):
        name = name.replace(special, escaped)  # what browsers do, so the header holds
    body = b"".join(
        [
            f"--{boundary}\r\n".encode(),
            b'Content-Disposition: form-data; name="files"; filename="' + name + b'"\r\n',
            b"Content-Type: application/octet-stream\r\n\r\n",
            content,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    return body, f"multipart/form-data; boundary={boundary}"
