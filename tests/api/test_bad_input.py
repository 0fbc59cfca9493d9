"""Every bad input is a 4xx with a readable message; the service and index stay intact."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from index.protocol import IndexStoreError
from rag.pipeline import Pipeline
from rag.settings import Settings

SMALL_LIMIT = 4_000

JSON = {"Content-Type": "application/json"}
NOT_TEXT = [  # as JSON escapes: valid JSON, not valid text
    ("x \\ud800", "a lone surrogate U+D800 at offset 2"),
    ("\\udfff why?", "a lone surrogate U+DFFF at offset 0"),
    ("\\ud83d why?", "a lone surrogate U+D83D"),  # half an emoji
    ("why \\u0000 now?", "the control character U+0000 at offset 4"),
    ("\\u001b[2J why?", "the control character U+001B"),
    ("why?\\u0085", "the control character U+0085"),
]


def index_state(client: TestClient) -> tuple[str, int, int, int]:
    """The service's status and the index's (generation, articles, chunks)."""
    health = client.get("/health").json()
    return health["status"], health["generation"], health["articles"], health["chunks"]


def assert_readable_error(response: Any, status: int, *phrases: str) -> None:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    for phrase in phrases:
        assert phrase in detail, detail


@pytest.fixture
def small_writer(writable_pipeline: Pipeline, writer_settings: Settings) -> Iterator[TestClient]:
    """A writable service that takes request bodies of at most SMALL_LIMIT bytes."""
    settings = writer_settings.model_copy(update={"max_upload_bytes": SMALL_LIMIT})
    with TestClient(create_app(settings, writable_pipeline)) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        ({"question": ""}, "question is empty"),
        ({"question": " \n\t "}, "question is empty"),
        ({"question": "why? " * 201}, "the limit is 1,000"),
        ({"question": "why?", "top_k": 0}, "top_k"),
        ({"question": "why?", "top_k": 51}, "top_k"),
        ({"question": "why?", "top_k": "5"}, "top_k"),
        ({"question": "why?", "top_k": True}, "top_k"),
        ({"question": "why?", "top_k": 2.5}, "top_k"),
        ({"question": 42}, "question"),
        ({"question": None}, "question"),
        ({"question": ["why?"]}, "question"),
        ({"top_k": 5}, "question: Field required"),
        ({"question": "why?", "topk": 5}, "topk"),
        ({"question": "why?", "article_ids": []}, "article_ids"),
        ({"question": "why?", "article_ids": "abc"}, "article_ids"),
        ({"question": "why?", "published_after": "last week"}, "published_after"),
        ([{"question": "why?"}], "request body"),
        ("why?", "request body"),
    ],
)
def test_bad_ask_bodies_are_422_with_a_message(client: TestClient, body: Any, phrase: str) -> None:
    before = index_state(client)

    assert_readable_error(client.post("/ask", json=body), 422, phrase)
    assert index_state(client) == before


@pytest.mark.parametrize(
    "raw", [b'{"question": "why?"', b"{question: why}", b'{"question": "why?"}}', b""]
)
def test_malformed_json_is_422_with_a_message(client: TestClient, raw: bytes) -> None:
    response = client.post("/ask", content=raw, headers={"Content-Type": "application/json"})

    assert_readable_error(response, 422)
    assert response.json()["detail"].startswith(("malformed JSON", "request body"))


@pytest.mark.parametrize(
    ("params", "phrase"),
    [
        ({}, "q: Field required"),
        ({"q": "  "}, "question is empty"),
        ({"q": "x" * 1001}, "the limit is 1,000"),
        ({"q": "why?", "top_k": "many"}, "top_k"),
        ({"q": "why?", "top_k": "0"}, "top_k"),
        ({"q": "why?", "published_before": "soon"}, "published_before"),
    ],
)
def test_bad_ask_queries_are_422_with_a_message(
    client: TestClient, params: dict[str, str], phrase: str
) -> None:
    assert_readable_error(client.get("/ask", params=params), 422, phrase)


@pytest.mark.parametrize(
    "params", [{"offset": "-1"}, {"limit": "0"}, {"limit": "100000"}, {"limit": "ten"}]
)
def test_bad_article_paging_is_422(client: TestClient, params: dict[str, str]) -> None:
    assert_readable_error(client.get("/articles", params=params), 422)


def test_unknown_article_is_404_naming_it(writer: TestClient, key: dict[str, str]) -> None:
    before = index_state(writer)

    assert_readable_error(writer.get("/articles/no-such-article"), 404, "no-such-article")
    assert_readable_error(writer.delete("/articles/no-such-article", headers=key), 404)
    assert index_state(writer) == before


@pytest.mark.parametrize(
    ("name", "content", "phrase"),
    [
        ("photo.png", b"\x89PNG\r\n\x1a\n\x00\x00", "unsupported file type"),
        ("binary.txt", b"Title\n\x00\x01\x02 body", "binary"),
        ("latin1.txt", "Caf\u00e9 news\n\nThe caf\u00e9 opened.".encode("latin-1"), "UTF-8"),
        ("empty.txt", b"", "empty"),
        ("title-only.txt", b"Just a title\n", "body"),
        ("broken.json", b'{"title": "x", "text": ', "invalid JSON"),
        ("no-text.json", b'{"title": "x"}', "text"),
        ("nothing.jsonl", b"\n\n", "empty"),
        ("bell.txt", b"Bells\n\nThe bell \x07 rang.", "the control character U+0007 at offset"),
        ("page.md", b"# Pages\n\nOne page.\x0cAnother.", "the control character U+000C"),
        ("lone.json", b'{"title": "x \\ud800", "text": "Body."}', "lone surrogate U+D800"),
        ("nul.jsonl", b'{"title": "x", "text": "a \\u0000 b"}', "control character U+0000"),
    ],
)
def test_unreadable_uploads_are_422_and_change_nothing(
    writer: TestClient, key: dict[str, str], name: str, content: bytes, phrase: str
) -> None:
    before = index_state(writer)

    response = writer.post("/articles", files={"files": (name, content)}, headers=key)

    assert_readable_error(response, 422, "nothing was added", name, phrase)
    assert index_state(writer) == before


@pytest.mark.parametrize(
    "body",
    [
        {"title": "No text"},
        {"title": "", "text": "Body."},
        {"title": "Numbers", "text": 12},
        {"title": "Bad id", "text": "Body.", "id": "../../etc/passwd"},
        [],
        "just a string",
    ],
)
def test_bad_article_json_is_422_and_changes_nothing(
    writer: TestClient, key: dict[str, str], body: Any
) -> None:
    before = index_state(writer)

    assert_readable_error(writer.post("/articles", json=body, headers=key), 422)
    assert index_state(writer) == before


def test_malformed_article_json_is_422(writer: TestClient, key: dict[str, str]) -> None:
    headers = {**key, "Content-Type": "application/json"}

    before = index_state(writer)

    broken = writer.post("/articles", content=b'{"title": "x", ', headers=headers)
    not_utf8 = writer.post("/articles", content=b'{"title": "caf\xe9"}', headers=headers)

    assert_readable_error(broken, 422, "malformed JSON")
    assert_readable_error(not_utf8, 422, "UTF-8")
    assert index_state(writer) == before


def test_other_content_types_are_415(writer: TestClient, key: dict[str, str]) -> None:
    headers = {**key, "Content-Type": "text/plain"}

    response = writer.post("/articles", content=b"Title\n\nBody.", headers=headers)

    assert_readable_error(response, 415, "multipart/form-data")


def test_upload_without_files_is_422(writer: TestClient, key: dict[str, str]) -> None:
    form = {"note": (None, "a text field, not a file")}

    response = writer.post("/articles", files=form, headers=key)

    assert_readable_error(response, 422, "no file")


def test_oversized_bodies_are_413_and_change_nothing(
    small_writer: TestClient, key: dict[str, str], festival: dict[str, Any]
) -> None:
    before = index_state(small_writer)
    long_text = "The festival was busy. " * 400
    big_article = {**festival, "text": long_text}

    responses = [
        small_writer.post("/articles", json=big_article, headers=key),
        small_writer.post("/articles", files={"files": ("big.txt", long_text)}, headers=key),
        small_writer.post("/ask", json={"question": "why?", "source": long_text}),
        # without a Content-Length header: the limit is counted while streaming
        small_writer.post(
            "/articles",
            content=iter([b'{"title": "x", "text": "', b"y" * SMALL_LIMIT, b'"}']),
            headers={**key, "Content-Type": "application/json"},
        ),
    ]

    for response in responses:
        assert_readable_error(response, 413, f"{SMALL_LIMIT:,} bytes", "RAG_MAX_UPLOAD_BYTES")
    assert index_state(small_writer) == before
    assert small_writer.post("/articles", json=festival, headers=key).status_code == 201


def test_unexpected_errors_are_a_plain_500_without_internals(
    sample_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_ask(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom in /srv/secret/index/v000001/vectors.faiss")

    monkeypatch.setattr(sample_pipeline, "ask", broken_ask)
    with TestClient(
        create_app(Settings(api_key=None), sample_pipeline), raise_server_exceptions=False
    ) as client:
        response = client.post("/ask", json={"question": "What aid did Macron commit?"})

        assert response.status_code == 500
        assert response.json() == {
            "detail": "internal error: the request failed; see the service log"
        }
        assert client.get("/health").json()["status"] == "ok"


def test_an_unreadable_index_is_503_without_its_path(
    sample_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreadable(*args: object, **kwargs: object) -> None:
        raise IndexStoreError("cannot read index file /srv/secret/index/v000001/vectors.faiss")

    monkeypatch.setattr(sample_pipeline, "articles", unreadable)
    with TestClient(create_app(Settings(api_key=None), sample_pipeline)) as client:
        response = client.get("/articles")

    assert_readable_error(response, 503, "index cannot be read")
    assert "/srv" not in response.text


def test_a_megabyte_long_question_is_refused(client: TestClient) -> None:
    response = client.post("/ask", json={"question": "why " * 262_144})

    assert_readable_error(response, 422, "the limit is 1,000")


@pytest.mark.parametrize("question", ["\u200b", "\u200b\u200c\u200d\ufeff", " \u2060\t\u200b "])
def test_zero_width_questions_are_blank(client: TestClient, question: str) -> None:
    assert_readable_error(client.post("/ask", json={"question": question}), 422, "empty")
    assert_readable_error(client.get("/ask", params={"q": question}), 422, "empty")


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Что сказал Зеленский лидерам ЕС? 泽连斯基说了什么?", None),  # noqa: RUF001
        ("🇺🇦 What aid did Macron commit? 💶🤝", "billion euros"),
        ("'; DROP TABLE articles; -- What aid did Macron commit?", "billion euros"),
        ('" OR 1=1 UNION SELECT text FROM articles --', None),
        ("<script>alert(1)</script> What aid did Macron commit?", "billion euros"),
        ("<img src=x onerror=alert(1)>{{7*7}}${7*7}", None),
    ],
)
def test_unusual_but_valid_questions_are_answered_as_plain_text(
    client: TestClient, question: str, expected: str | None
) -> None:
    before = index_state(client)

    response = client.post("/ask", json={"question": question})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["question"] == question
    if expected is not None:  # the markup or SQL is searched as words, like the rest
        assert any(expected in passage["text"] for passage in body["passages"])
    assert index_state(client) == before


def test_a_question_body_that_is_not_utf8_is_422(client: TestClient) -> None:
    response = client.post(
        "/ask",
        content='{"question": "Caf\u00e9 news?"}'.encode("latin-1"),
        headers={"Content-Type": "application/json"},
    )

    assert_readable_error(response, 422, "not valid UTF-8")


def test_a_null_body_is_422(client: TestClient) -> None:
    response = client.post("/ask", content=b"null", headers={"Content-Type": "application/json"})

    assert_readable_error(response, 422, "request body")


def test_a_broken_multipart_upload_is_422(writer: TestClient, key: dict[str, str]) -> None:
    headers = {**key, "Content-Type": "multipart/form-data; boundary=b0und"}
    before = index_state(writer)

    response = writer.post(
        "/articles", content=b"--b0und\r\n-4.6e+16--b0und--\r\n", headers=headers
    )

    assert_readable_error(response, 422, "cannot be read")
    assert index_state(writer) == before


def test_an_unsupported_method_is_405_naming_every_allowed_one(client: TestClient) -> None:
    for method, path, allowed in [
        ("PUT", "/articles/some-id", "DELETE, GET"),
        ("PATCH", "/articles", "GET, POST"),
        ("DELETE", "/ask", "GET, POST"),
    ]:
        response = client.request(method, path)

        assert_readable_error(response, 405)
        assert response.headers["allow"] == allowed


def test_an_article_over_the_length_limit_is_refused_and_changes_nothing(
    writer: TestClient, key: dict[str, str], festival: dict[str, Any]
) -> None:
    before = index_state(writer)
    ten_megabytes = {**festival, "text": "The festival was busy. " * 456_000}

    response = writer.post("/articles", json=ten_megabytes, headers=key)

    assert_readable_error(
        response, 422, "nothing was added", "the limit is 500,000", "RAG_MAX_ARTICLE_CHARS"
    )
    assert index_state(writer) == before


def test_ten_thousand_tiny_articles_in_one_upload_are_added_in_batches(
    writer: TestClient, writer_settings: Settings, key: dict[str, str]
) -> None:
    count = 10_000
    feed = "".join(
        json.dumps(
            {"id": f"tiny-{n:05d}", "title": f"Tide note {n}", "text": f"Tide {n} was high."}
        )
        + "\n"
        for n in range(count)
    )
    _, generation, articles, _ = index_state(writer)

    response = writer.post("/articles", files={"files": ("tides.jsonl", feed)}, headers=key)

    assert response.status_code == 201, response.text[:500]
    report = response.json()
    assert len(report["added"]) == count
    assert report["rejected"] == report["duplicates"] == []
    after = writer.get("/health").json()
    assert after["articles"] == articles + count
    # one commit per batch of RAG_INGEST_COMMIT_EVERY articles, not one per article
    assert after["generation"] - generation == count // writer_settings.ingest_commit_every
    assert writer.get("/articles/tiny-09999").json()["text"] == "Tide 9999 was high."


def test_duplicate_ids_and_content_are_reported_not_stored_twice(
    writer: TestClient, key: dict[str, str], festival: dict[str, Any]
) -> None:
    _, _, articles, _ = index_state(writer)
    same_id_other_text = {**festival, "text": "A different story under the same id."}
    same_text_without_id = {k: v for k, v in festival.items() if k != "id"}

    response = writer.post(
        "/articles", json=[festival, same_id_other_text, same_text_without_id], headers=key
    )

    assert response.status_code == 201
    report = response.json()
    assert [a["id"] for a in report["added"]] == ["harbour-festival"]
    [clash] = report["rejected"]
    assert (clash["name"], "already used" in clash["reason"]) == ("record 2", True)
    [duplicate] = report["duplicates"]
    assert (duplicate["name"], "harbour-festival" in duplicate["reason"]) == ("record 3", True)
    again = writer.post("/articles", json=same_id_other_text, headers=key)
    assert_readable_error(again, 422, "already used")
    assert index_state(writer)[2] == articles + 1


def test_upload_file_names_never_reach_the_file_system(
    writer: TestClient, key: dict[str, str], tmp_path: Path
) -> None:
    escape = tmp_path / "escaped"
    names = [str(escape / "absolute.txt"), "../" * 16 + str(escape / "relative.txt").lstrip("/")]
    files = [
        ("files", (name, f"Escape attempt {n}\n\nThe name of file {n} points outside.".encode()))
        for n, name in enumerate(names)
    ]

    added = writer.post("/articles", files=files, headers=key)
    passwd = writer.post("/articles", files={"files": ("../../etc/passwd", b"x")}, headers=key)

    assert added.status_code == 201, added.text
    assert sorted(a["source"] for a in added.json()["added"]) == ["absolute.txt", "relative.txt"]
    assert not escape.exists()
    assert_readable_error(passwd, 422, "../../etc/passwd", "unsupported file type")
    assert "root:" not in passwd.text


@pytest.mark.parametrize(
    "path",
    ["/articles/..%2F..%2Fetc%2Fpasswd", "/articles/%2E%2E", "/articles/%2Fetc%2Fpasswd"],
)
def test_article_ids_that_try_path_traversal_are_refused(
    writer: TestClient, key: dict[str, str], path: str
) -> None:
    before = index_state(writer)

    for response in (writer.get(path), writer.delete(path, headers=key)):
        assert response.status_code in (404, 422), response.text
        assert isinstance(response.json()["detail"], str)
    assert index_state(writer) == before


@pytest.mark.parametrize(("escaped", "phrase"), NOT_TEXT)
def test_questions_and_filters_that_are_not_text_are_422_naming_the_field(
    client: TestClient, escaped: str, phrase: str
) -> None:
    as_question = f'{{"question": "{escaped}"}}'
    as_source = f'{{"question": "What aid did Macron commit?", "source": "{escaped}"}}'

    for field, body in [("question", as_question), ("source", as_source)]:
        response = client.post("/ask", content=body.encode(), headers=JSON)
        assert_readable_error(response, 422, f"{field}: ", phrase)


def test_query_strings_with_control_characters_are_422(client: TestClient) -> None:
    refused = client.get("/ask?q=why%00now")
    # bytes that are not UTF-8 (a surrogate's) arrive as U+FFFD: text, so answered
    undecodable = client.get("/ask?q=What%20aid%20did%20Macron%20commit%3F%ED%A0%80")

    assert_readable_error(refused, 422, "q: ", "the control character U+0000")
    assert undecodable.status_code == 200, undecodable.text


@pytest.mark.parametrize("field", ["title", "text", "url", "source", "published"])
@pytest.mark.parametrize(("escaped", "phrase"), NOT_TEXT[:1] + NOT_TEXT[3:4])
def test_article_fields_that_are_not_text_are_refused_naming_the_record(
    writer: TestClient,
    key: dict[str, str],
    festival: dict[str, Any],
    field: str,
    escaped: str,
    phrase: str,
) -> None:
    before = index_state(writer)
    body = json.dumps({**festival, field: "@"}).replace('"@"', f'"{escaped}"')

    response = writer.post("/articles", content=body.encode(), headers={**key, **JSON})

    assert_readable_error(
        response, 422, f"nothing was added: record 1: the {field} contains {phrase}"
    )
    assert index_state(writer) == before


def test_a_record_that_is_not_text_fails_alone(
    writer: TestClient, key: dict[str, str], festival: dict[str, Any]
) -> None:
    body = json.dumps([{"title": "@", "text": "Body."}, festival]).replace('"@"', '"x \\ud800"')

    response = writer.post("/articles", content=body.encode(), headers={**key, **JSON})

    assert response.status_code == 201, response.text
    report = response.json()
    assert [added["id"] for added in report["added"]] == [festival["id"]]
    assert [rejected["name"] for rejected in report["rejected"]] == ["record 1"]


def test_an_upload_whose_name_is_not_text_is_refused_naming_it_escaped(
    writer: TestClient, key: dict[str, str]
) -> None:
    before = index_state(writer)
    files = {"files": ("wipe\x1b[2J.txt", b"Wipe\n\nThe screen was wiped.")}

    response = writer.post("/articles", files=files, headers=key)

    assert_readable_error(
        response, 422, "wipe\\x1b[2J.txt: the file name contains the control character U+001B"
    )
    assert "\x1b" not in response.json()["detail"]
    assert index_state(writer) == before
