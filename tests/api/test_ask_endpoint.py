"""POST /ask and GET /ask: the HTTP contract, answers, abstention and filters."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

MACRON = "What aid did Macron commit?"
OFF_TOPIC = "What is the boiling point of liquid nitrogen?"


def ask(client: TestClient, question: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/ask", json={"question": question, **fields})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def article_id_by_source(client: TestClient, source: str) -> str:
    articles = client.get("/articles").json()["articles"]
    return next(a["id"] for a in articles if a["source"] == source)


def test_response_has_exactly_the_contract_fields(client: TestClient) -> None:
    body = ask(client, MACRON, top_k=5)

    assert set(body) == {"question", "answers", "passages", "took_ms"}
    assert body["question"] == MACRON
    assert body["answers"] and body["passages"]
    answer_fields = {"text", "score", "article_id", "title", "url", "start", "end", "passage_id"}
    assert all(set(answer) == answer_fields | {"context", "unsure"} for answer in body["answers"])
    assert all(answer["unsure"] == (answer["score"] < 0.5) for answer in body["answers"])
    assert all(set(answer["context"]) == {"text", "start", "end"} for answer in body["answers"])
    passage_fields = {"passage_id", "article_id", "title", "url", "text", "start", "end", "score"}
    assert all(set(passage) == passage_fields for passage in body["passages"])
    scores = [answer["score"] for answer in body["answers"]]
    assert scores == sorted(scores, reverse=True)
    assert all(0 <= score <= 1 for score in scores)
    assert isinstance(body["took_ms"], float)


def test_macron_answer_is_verbatim_and_its_offsets_match_the_article(client: TestClient) -> None:
    body = ask(client, MACRON)
    best = body["answers"][0]

    assert "three billion euros" in best["text"]
    assert len(best["text"]) < len(best["context"]["text"])  # the words, inside their sentence
    article = client.get(f"/articles/{best['article_id']}").json()
    assert article["text"][best["start"] : best["end"]] == best["text"]
    context = best["context"]
    assert article["text"][context["start"] : context["end"]] == context["text"]
    assert context["start"] <= best["start"] < best["end"] <= context["end"]
    assert context["text"].startswith("Macron said that France would continue")
    assert best["title"] == article["title"]
    passage = next(p for p in body["passages"] if p["passage_id"] == best["passage_id"])
    assert article["text"][passage["start"] : passage["end"]] == passage["text"]
    assert passage["start"] <= best["start"] < best["end"] <= passage["end"]


def test_get_ask_gives_the_same_answer_as_post(client: TestClient) -> None:
    posted = ask(client, MACRON, top_k=3)
    response = client.get("/ask", params={"q": MACRON, "top_k": 3})

    assert response.status_code == 200
    got = response.json()
    assert got["answers"] == posted["answers"]
    assert got["passages"] == posted["passages"]


def test_off_topic_question_has_no_answer_but_lists_the_closest_passages(
    client: TestClient,
) -> None:
    body = ask(client, OFF_TOPIC)

    assert body["answers"] == []
    assert body["passages"]


def test_top_k_bounds_the_passages(client: TestClient) -> None:
    body = ask(client, MACRON, top_k=1)

    assert len(body["passages"]) == 1
    assert len(body["answers"]) <= 1


def test_article_ids_filter_keeps_other_articles_out(client: TestClient) -> None:
    rt = article_id_by_source(client, "victory-plan-game-is-up.txt")

    body = ask(client, MACRON, article_ids=[rt])

    assert body["passages"]
    assert {p["article_id"] for p in body["passages"]} == {rt}
    assert all("three billion euros" not in a["text"] for a in body["answers"])


def test_source_filter_keeps_other_sources_out(client: TestClient) -> None:
    source = "zelensky-seeks-eu-nato-backing.txt"
    wanted = article_id_by_source(client, source)

    body = ask(client, "What did Zelensky tell EU leaders?", source=source)

    assert body["passages"]
    assert {p["article_id"] for p in body["passages"]} == {wanted}


def test_filter_that_matches_nothing_answers_nothing(client: TestClient) -> None:
    body = ask(client, MACRON, source="No Such Paper")

    assert body["answers"] == []
    assert body["passages"] == []


def test_published_date_filters(
    writer: TestClient, key: dict[str, str], festival: dict[str, Any]
) -> None:
    last_year = {
        **festival,
        "id": "harbour-festival-2023",
        "text": "The harbour festival in Port Ellis drew 31,000 visitors, the organisers said.",
        "published": "2023-08-06T21:30:00+02:00",  # a timestamp, as web pages give it
    }
    assert writer.post("/articles", json=[festival, last_year], headers=key).status_code == 201
    question = "How many visitors came to the harbour festival?"

    after = ask(writer, question, published_after="2024-01-01")
    before = ask(writer, question, published_before="2023-12-31")
    within = ask(writer, question, published_after="2023-08-01", published_before="2023-08-31")
    that_day = ask(writer, question, published_after="2023-08-06", published_before="2023-08-06")

    assert {p["article_id"] for p in after["passages"]} == {"harbour-festival"}
    assert {p["article_id"] for p in before["passages"]} == {"harbour-festival-2023"}
    assert {p["article_id"] for p in within["passages"]} == {"harbour-festival-2023"}
    assert {p["article_id"] for p in that_day["passages"]} == {"harbour-festival-2023"}
