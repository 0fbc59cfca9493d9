"""GET/POST/DELETE /articles: browsing, keys, add → ask → delete, uploads, concurrency."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.embedding import Embedder
from rag.pipeline import Pipeline
from rag.settings import Settings

FESTIVAL_QUESTION = "How many visitors came to the harbour festival?"


def index_state(client: TestClient) -> tuple[int, int, int]:
    """(generation, articles, chunks): changes with every write that lands."""
    health = client.get("/health").json()
    return health["generation"], health["articles"], health["chunks"]


def best_answer(client: TestClient, question: str) -> dict[str, Any] | None:
    answers = client.post("/ask", json={"question": question}).json()["answers"]
    return answers[0] if answers else None


def test_lists_the_sample_articles_a_page_at_a_time(client: TestClient) -> None:
    everything = client.get("/articles").json()
    page = client.get("/articles", params={"offset": 1, "limit": 1}).json()

    assert everything["total"] == 3
    assert {a["source"] for a in everything["articles"]} == {
        "victory-plan-game-is-up.txt",
        "zelensky-seeks-eu-nato-backing.txt",
        "zelenskyy-outlines-victory-plan.txt",
    }
    assert all(a["chunks"] > 0 for a in everything["articles"])
    assert (page["total"], page["offset"], page["limit"]) == (3, 1, 1)
    assert page["articles"] == everything["articles"][1:2]


def test_article_detail_carries_the_full_text(client: TestClient) -> None:
    summary = next(
        a
        for a in client.get("/articles").json()["articles"]
        if a["source"] == "victory-plan-game-is-up.txt"
    )

    article = client.get(f"/articles/{summary['id']}").json()

    assert {field: article[field] for field in summary} == summary
    assert article["url"] == (
        "https://www.rt.com/russia/606270-zelensky-proposes-nato-enter-conflict-russia/"
    )
    assert article["text"].startswith("The plan espoused by the head of the Kiev regime")
    assert "https://" not in article["text"]


def test_writes_are_refused_while_no_key_is_configured(
    client: TestClient, festival: dict[str, Any]
) -> None:
    before = index_state(client)
    some_id = client.get("/articles").json()["articles"][0]["id"]

    added = client.post("/articles", json=festival, headers={"X-API-Key": "anything"})
    deleted = client.delete(f"/articles/{some_id}", headers={"X-API-Key": "anything"})

    for response in (added, deleted):
        assert response.status_code == 403
        assert "RAG_API_KEY" in response.json()["detail"]
    assert index_state(client) == before
    assert client.get("/health").json()["writable"] is False


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}])
def test_writes_need_the_right_key(
    writer: TestClient, festival: dict[str, Any], headers: dict[str, str]
) -> None:
    before = index_state(writer)
    some_id = writer.get("/articles").json()["articles"][0]["id"]

    added = writer.post("/articles", json=festival, headers=headers)
    deleted = writer.delete(f"/articles/{some_id}", headers=headers)

    assert (added.status_code, deleted.status_code) == (401, 401)
    assert "X-API-Key" in added.json()["detail"]
    assert index_state(writer) == before


def test_add_then_ask_finds_it_then_delete_and_it_is_gone(
    writer: TestClient, key: dict[str, str], festival: dict[str, Any]
) -> None:
    assert best_answer(writer, FESTIVAL_QUESTION) is None

    added = writer.post("/articles", json=festival, headers=key)

    assert added.status_code == 201
    report = added.json()
    assert [a["id"] for a in report["added"]] == ["harbour-festival"]
    assert report["duplicates"] == report["rejected"] == []
    answer = best_answer(writer, FESTIVAL_QUESTION)
    assert answer is not None
    assert answer["article_id"] == "harbour-festival"
    assert "48,000" in answer["text"] and "48,000 visitors" in answer["context"]["text"]
    assert answer["url"] == festival["url"]
    assert writer.get("/articles").json()["total"] == 4

    deleted = writer.delete("/articles/harbour-festival", headers=key)

    assert deleted.status_code == 204
    assert writer.get("/articles/harbour-festival").status_code == 404
    assert writer.get("/articles").json()["total"] == 3
    gone = writer.post("/ask", json={"question": FESTIVAL_QUESTION}).json()
    assert all(p["article_id"] != "harbour-festival" for p in gone["passages"])
    assert writer.delete("/articles/harbour-festival", headers=key).status_code == 404


def test_a_list_with_a_bad_record_adds_the_good_ones_and_reports_the_bad(
    writer: TestClient, key: dict[str, str], festival: dict[str, Any]
) -> None:
    quiet_day = {"title": "Quiet day", "text": "Nothing happened in Port Ellis today."}

    response = writer.post(
        "/articles", json=[festival, {"title": "No body"}, quiet_day], headers=key
    )

    assert response.status_code == 201
    report = response.json()
    added = {a["title"]: a for a in report["added"]}
    assert set(added) == {festival["title"], "Quiet day"}
    assert added[festival["title"]]["source"] == festival["source"]
    assert added["Quiet day"]["source"] is None
    [rejected] = report["rejected"]
    assert rejected["name"] == "record 2"
    assert "'text'" in rejected["reason"]


def test_sending_the_same_article_again_is_a_duplicate_not_an_error(
    writer: TestClient, key: dict[str, str], festival: dict[str, Any]
) -> None:
    assert writer.post("/articles", json=festival, headers=key).status_code == 201
    before = index_state(writer)

    again = writer.post("/articles", json=festival, headers=key)

    assert again.status_code == 200
    assert again.json()["added"] == []
    assert len(again.json()["duplicates"]) == 1
    assert index_state(writer) == before


def as_file(suffix: str, title: str, text: str) -> str:
    """An article as the content of a file of the given type."""
    record = json.dumps({"title": title, "text": text})
    return {
        ".txt": f"{title}\n\n{text}\n",
        ".md": f"# {title}\n\n{text}\n",
        ".html": f"<html><head><title>{title}</title></head>"
        f"<body><script>alert(1)</script><p>{text}</p></body></html>",
        ".json": record,
        ".jsonl": record + "\n",
        ".csv": f'headline,body\n"{title}","{text}"\n',
    }[suffix]


@pytest.mark.parametrize("suffix", [".txt", ".md", ".html", ".json", ".jsonl", ".csv"])
def test_uploaded_files_of_every_format_are_added(
    writer: TestClient, key: dict[str, str], festival: dict[str, Any], suffix: str
) -> None:
    content = as_file(suffix, festival["title"], festival["text"])

    response = writer.post(
        "/articles", files={"files": (f"festival{suffix}", content.encode())}, headers=key
    )

    assert response.status_code == 201, response.text
    [added] = response.json()["added"]
    assert added["title"] == festival["title"]
    article = writer.get(f"/articles/{added['id']}").json()
    assert article["text"] == festival["text"]
    answer = best_answer(writer, FESTIVAL_QUESTION)
    assert answer is not None and answer["article_id"] == added["id"]


def test_a_saved_news_api_answer_is_added_and_filtered_by_its_source_and_day(
    writer: TestClient, key: dict[str, str], festival: dict[str, Any]
) -> None:
    answer = {
        "status": "ok",
        "totalResults": 1,
        "articles": [
            {
                "source": {"id": None, "name": festival["source"]},
                "title": festival["title"],
                "content": festival["text"],
                "url": festival["url"],
                "publishedAt": "2024-08-04T18:30:00Z",
            }
        ],
    }
    upload = {"files": ("everything.json", json.dumps(answer).encode())}

    response = writer.post("/articles", files=upload, headers=key)

    assert response.status_code == 201, response.text
    [added] = response.json()["added"]
    on_the_day = {"published_after": "2024-08-04", "published_before": "2024-08-04"}
    filters = {"source": festival["source"], **on_the_day}
    ask = writer.post("/ask", json={"question": FESTIVAL_QUESTION, **filters})
    [answer_found, *_] = ask.json()["answers"]
    assert answer_found["article_id"] == added["id"] and "48,000" in answer_found["text"]


def test_several_files_in_one_upload(writer: TestClient, key: dict[str, str]) -> None:
    files = [
        ("files", ("a.txt", b"Harbour opens\n\nThe harbour opened on Monday.")),
        ("files", ("b.txt", b"Bridge closes\n\nThe bridge closed on Tuesday.")),
    ]

    response = writer.post("/articles", files=files, headers=key)

    assert response.status_code == 201
    titles = sorted(a["title"] for a in response.json()["added"])
    assert titles == ["Bridge closes", "Harbour opens"]
    assert writer.get("/articles").json()["total"] == 5


def test_a_write_through_one_worker_is_seen_by_another(
    writable_pipeline: Pipeline,
    embedder: Embedder,
    writer_settings: Settings,
    key: dict[str, str],
    festival: dict[str, Any],
) -> None:
    # Two workers = two pipelines over one index directory, sharing no memory.
    other_worker = Pipeline.open(writer_settings, embedder)
    with (
        TestClient(create_app(writer_settings, writable_pipeline)) as first,
        TestClient(create_app(writer_settings, other_worker)) as second,
    ):
        assert second.get("/articles/harbour-festival").status_code == 404

        assert first.post("/articles", json=festival, headers=key).status_code == 201
        assert second.get("/articles/harbour-festival").status_code == 200
        answer = best_answer(second, FESTIVAL_QUESTION)
        assert answer is not None and answer["article_id"] == "harbour-festival"

        assert second.delete("/articles/harbour-festival", headers=key).status_code == 204
        assert first.get("/articles/harbour-festival").status_code == 404


def test_readers_during_writes_always_see_a_whole_index(
    writer: TestClient, key: dict[str, str], festival: dict[str, Any]
) -> None:
    stop = threading.Event()
    problems: list[str] = []
    reads = 0

    def read() -> None:
        nonlocal reads
        while not stop.is_set():
            response = writer.post("/ask", json={"question": FESTIVAL_QUESTION, "top_k": 3})
            reads += 1
            if response.status_code != 200:
                problems.append(response.text)
                continue
            body = response.json()
            cited = {p["passage_id"] for p in body["passages"]}
            if any(a["passage_id"] not in cited for a in body["answers"]):
                problems.append(f"answer cites a passage that is not listed: {body}")

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    try:
        for _ in range(3):
            assert writer.post("/articles", json=festival, headers=key).status_code == 201
            assert writer.delete("/articles/harbour-festival", headers=key).status_code == 204
    finally:
        stop.set()
        for reader in readers:
            reader.join()

    assert problems == []
    assert reads > 0
    assert writer.get("/articles").json()["total"] == 3
