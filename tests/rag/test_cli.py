"""The ``rag`` command line, run in-process on a temporary index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def index_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "index"))
    return tmp_path / "index"


def test_ask_seeds_sample_articles_and_cites_the_answer() -> None:
    result = runner.invoke(app, ["ask", "What aid did Macron commit?"])
    assert result.exit_code == 0, result.output
    assert "three billion euros" in result.output
    assert "Zelenskyy outlines" in result.output
    assert "chars " in result.output and "Cited passages" in result.output

    as_json = runner.invoke(app, ["ask", "What aid did Macron commit?", "--json"])
    payload = json.loads(as_json.stdout)
    assert payload["answers"][0]["text"].endswith("three billion euros in aid this year.")


def test_ask_off_topic_says_no_answer() -> None:
    result = runner.invoke(app, ["ask", "What is the capital of Australia?"])
    assert result.exit_code == 0
    assert "No answer in the indexed articles" in result.output
    assert "Cited passages" in result.output


def test_ask_rejects_blank_question() -> None:
    result = runner.invoke(app, ["ask", "   "])
    assert result.exit_code == 2
    assert "question is empty" in result.output


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
