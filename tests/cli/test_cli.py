"""The ``rag`` command line, run in-process on a temporary index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.commands import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def index_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "index"))
    return tmp_path / "index"


def ask_json(question: str, *options: str) -> dict[str, Any]:
    """``rag ask QUESTION --json OPTIONS``, which must succeed, as its JSON."""
    result = runner.invoke(app, ["ask", question, "--json", *options])
    assert result.exit_code == 0, result.output
    payload: dict[str, Any] = json.loads(result.stdout)
    return payload


def test_ask_seeds_sample_articles_and_cites_the_answer() -> None:
    result = runner.invoke(app, ["ask", "What aid did Macron commit?"])
    assert result.exit_code == 0, result.output
    assert "three billion euros" in result.output
    assert "Zelenskyy outlines" in result.output
    assert "chars " in result.output and "Cited passages" in result.output

    as_json = runner.invoke(app, ["ask", "What aid did Macron commit?", "--json"])
    payload = json.loads(as_json.stdout)
    best = payload["answers"][0]
    assert "three billion euros" in best["text"]
    assert best["context"]["text"].endswith("three billion euros in aid this year.")
    shown = " ".join(result.output.split())
    assert "continue to honour its current commitments" in shown  # the span's sentence


def test_ask_marks_answers_scoring_under_rag_unsure_below(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_UNSURE_BELOW", "1")  # every score is below 1
    unsure = runner.invoke(app, ["ask", "What aid did Macron commit?"])
    assert unsure.exit_code == 0, unsure.output
    as_json = runner.invoke(app, ["ask", "What aid did Macron commit?", "--json"])
    answers = json.loads(as_json.stdout)["answers"]
    assert answers and unsure.output.count("(unsure: check it against its sentence)") == len(
        answers
    )

    monkeypatch.setenv("RAG_UNSURE_BELOW", "0")
    sure = runner.invoke(app, ["ask", "What aid did Macron commit?"])
    assert "three billion euros" in sure.output and "unsure" not in sure.output


def test_ask_off_topic_says_no_answer() -> None:
    result = runner.invoke(app, ["ask", "What is the capital of Australia?"])
    assert result.exit_code == 0
    assert "No answer in the indexed articles" in result.output
    assert "Cited passages" in result.output


def test_ask_rejects_blank_question() -> None:
    result = runner.invoke(app, ["ask", "   "])
    assert result.exit_code == 2
    assert "question is empty" in result.output


def test_ask_within_a_source_a_period_or_chosen_articles(tmp_path: Path) -> None:
    festival = "The harbour festival in Port Ellis drew {} visitors, the organisers said."
    records = [
        {"id": "fest-2023", "title": "Festival", "text": festival.format("31,000")},
        {"id": "fest-2024", "title": "Festival", "text": festival.format("48,000")},
    ]
    records[0] |= {"source": "Gazette", "published": "2023-08-06T21:30:00+02:00"}
    records[1] |= {"source": "Courier", "published": "2024-08-04"}
    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(json.dumps(record) + "\n" for record in records))
    assert runner.invoke(app, ["ingest", str(feed)]).exit_code == 0
    question = "How many visitors came to the harbour festival?"

    def cited(*options: str) -> set[str]:
        return {passage["article_id"] for passage in ask_json(question, *options)["passages"]}

    assert cited() == {"fest-2023", "fest-2024"}
    assert cited("--source", "Gazette") == {"fest-2023"}
    assert cited("--after", "2023-08-06", "--before", "2023-08-06") == {"fest-2023"}
    assert cited("--after", "2024-01-01") == {"fest-2024"}
    assert cited("--article", "fest-2024", "--article", "no-such") == {"fest-2024"}
    assert cited("--source", "Gazette", "--after", "2024-01-01") == set()
    bad_date = runner.invoke(app, ["ask", question, "--before", "4 Aug 2024"])
    assert bad_date.exit_code == 2 and "--before" in bad_date.output


def test_ingest_list_delete(tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_text(
        json.dumps({"id": "port-1", "title": "Port news", "text": "The port reopened."})
        + "\n{broken\n"
    )
    result = runner.invoke(app, ["ingest", str(feed)])
    assert result.exit_code == 0, result.output
    assert "added 1 articles (1 chunks), skipped 0 duplicates, rejected 1" in result.output
    assert "feed.jsonl line 2: invalid JSON" in result.output

    again = runner.invoke(app, ["ingest", str(feed)])
    assert "skipped 1 duplicates" in again.output

    listing = runner.invoke(app, ["articles", "--json"])
    assert [a["id"] for a in json.loads(listing.stdout)] == ["port-1"]

    assert runner.invoke(app, ["delete", "port-1"]).exit_code == 0
    missing = runner.invoke(app, ["delete", "port-1"])
    assert missing.exit_code == 1 and "no article with id 'port-1'" in missing.output
    assert json.loads(runner.invoke(app, ["articles", "--json"]).stdout) == []


def test_ingest_missing_path_names_it(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ingest", str(tmp_path / "nope.txt")])
    assert result.exit_code == 1
    assert "nope.txt: no such file or folder" in result.output


def test_ingest_of_ten_thousand_tiny_articles_in_one_jsonl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_TORCH_THREADS", "1")
    feed = tmp_path / "tides.jsonl"
    records = ({"title": f"Tide note {n}", "text": f"Tide {n} was high."} for n in range(10_000))
    feed.write_text("".join(json.dumps(record) + "\n" for record in records))

    result = runner.invoke(app, ["ingest", str(feed)])

    assert result.exit_code == 0, result.output
    assert "added 10000 articles (10000 chunks), skipped 0 duplicates, rejected 0" in result.output
    checked = runner.invoke(app, ["check"])
    assert checked.exit_code == 0, checked.output
    assert "10000 articles" in checked.output


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("huge.txt", b"Huge\n\n" + b"The festival was busy. " * 456_000, "RAG_MAX_ARTICLE_CHARS"),
        ("binary.txt", bytes(range(256)) * 64, "binary"),
        ("latin1.txt", "Caf\u00e9\n\nLe caf\u00e9 a ouvert.".encode("latin-1"), "UTF-8"),
    ],
)
def test_ingest_of_an_unusable_file_is_a_clear_error(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    result = runner.invoke(app, ["ingest", str(path)])

    assert result.exit_code == 1
    assert "rejected" in result.output and message in result.output
    assert "Traceback" not in result.output
    assert runner.invoke(app, ["check"]).output.strip() == "no index yet"


def test_serve_binds_to_loopback_and_hands_workers_the_app_factory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: dict[str, Any] = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **options: started.update(app=app, **options))

    result = runner.invoke(app, ["serve", "--workers", "2"])

    assert result.exit_code == 0, result.output
    assert {k: started[k] for k in ("app", "factory", "host", "port", "workers")} == {
        "app": "api.app:create_app_from_env",
        "factory": True,
        "host": "127.0.0.1",
        "port": 8000,
        "workers": 2,
    }
    assert started["access_log"] is False  # the service writes its own access lines


def test_ingested_web_pages_and_scraped_records_are_answered_from_their_story_text(
    tmp_path: Path,
) -> None:
    page = tmp_path / "rome.html"
    page.write_text(
        "<html><head><title>Meloni meets Zelenskyy in Rome</title></head><body>"
        "<header>Daily News: subscribe for 1 euro a week</header><main><article>"
        "<h1>Meloni meets Zelenskyy in Rome</h1><p>Italian Prime Minister Giorgia Meloni "
        "met Volodymyr Zelenskyy in Rome on Thursday.</p><p>Italy has so far sent 1,700 "
        "million euros of military aid, according to the Kiel Institute.</p></article>"
        "<section><article><h3>Storm hits Lisbon</h3><p>A storm hit Lisbon on Monday, "
        "killing 12 people.</p></article></section></main></body></html>"
    )
    export = tmp_path / "export.jsonl"
    text = "<p>The port of Naples handled <b>4.2 million</b> containers in 2023.</p>"
    export.write_text(json.dumps({"title": "Naples port", "text": text}) + "\n")
    assert runner.invoke(app, ["ingest", str(page), str(export)]).exit_code == 0

    [aid, *_] = ask_json("How much military aid has Italy sent?")["answers"]
    assert "1,700 million" in aid["text"]
    lisbon = ask_json("How many people did the storm in Lisbon kill?")  # a teaser's words
    assert lisbon["answers"] == []
    [containers, *_] = ask_json("How many containers did the port of Naples handle in 2023?")[
        "answers"
    ]
    assert containers["text"].startswith("4.2 million")
    assert "<" not in containers["context"]["text"]
