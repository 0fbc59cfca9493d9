"""Loading our question file and files in the SQuAD layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.datasets import (
    DatasetError,
    Example,
    QuestionSet,
    load_articles,
    load_jsonl,
    load_squad,
    near_misses,
    with_removal,
)
from eval.metrics import contains_answer
from rag.settings import PROJECT_ROOT

SAMPLE = PROJECT_ROOT / "eval" / "data" / "sample.jsonl"


def test_sample_set_has_the_promised_shape() -> None:
    questions = load_jsonl(SAMPLE)
    answerable = [e for e in questions.examples if e.answerable]
    assert len(answerable) >= 60
    assert len(questions.examples) - len(answerable) >= 15
    assert {e.split for e in questions.examples} == {"dev", "test"}


def test_every_gold_answer_is_in_its_gold_article() -> None:
    articles, _ = load_articles(PROJECT_ROOT / "data" / "articles")
    by_stem = {Path(a.source or "").stem: a for a in articles}
    for example in load_jsonl(SAMPLE).examples:
        if example.answerable:
            assert example.article in by_stem, example.id
            text = by_stem[example.article].text
            assert contains_answer(text, example.answers), example.id


def _write(path: Path, *records: dict[str, object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"id": "q", "split": "train", "question": "?", "answers": []}, "split must be"),
        ({"id": "q", "split": "dev", "question": "?", "answers": ["x"]}, "gold 'article'"),
        (
            {"id": "q", "split": "dev", "question": "?", "answers": [], "answerable": True},
            "disagrees",
        ),
        ({"id": "q", "split": "dev", "question": "", "answers": []}, "'question'"),
    ],
)
def test_bad_records_are_rejected_with_the_line(
    tmp_path: Path, record: dict[str, object], message: str
) -> None:
    path = _write(tmp_path / "q.jsonl", record)
    with pytest.raises(DatasetError, match=message) as error:
        load_jsonl(path)
    assert "line 1" in str(error.value)


def test_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    record = {"id": "q", "split": "dev", "question": "?", "answers": []}
    with pytest.raises(DatasetError, match="duplicate id"):
        load_jsonl(_write(tmp_path / "q.jsonl", record, record))


def _squad(tmp_path: Path, questions: int) -> Path:
    qas = [
        {"id": f"q{i}", "question": f"Question {i}?", "answers": [{"text": "Denver Broncos"}] * 2}
        for i in range(questions)
    ]
    document = {
        "version": "1.1",
        "data": [
            {
                "title": "Super_Bowl_(50)",
                "paragraphs": [
                    {"context": "The Denver Broncos won.", "qas": qas},
                    {"context": "It was in Santa Clara.", "qas": []},
                ],
            }
        ],
    }
    path = tmp_path / "tiny-squad.json"
    path.write_text(json.dumps(document))
    return path


def test_squad_layout_joins_paragraphs_and_splits_questions_by_id(tmp_path: Path) -> None:
    questions = load_squad(_squad(tmp_path, 40))
    (article,) = questions.articles
    assert article.id == "Super_Bowl_-50-"
    assert article.title == "Super Bowl (50)"
    assert article.text == "The Denver Broncos won.\n\nIt was in Santa Clara."
    assert questions.examples[0].answers == ("Denver Broncos",)  # duplicates merged
    assert all(e.article == article.id for e in questions.examples)
    splits = [e.split for e in questions.examples]
    assert 0 < splits.count("dev") < 40  # both halves get questions
    assert splits == [e.split for e in load_squad(_squad(tmp_path, 40)).examples]


def test_a_news_article_titled_by_its_url_gets_a_title_url_and_date(tmp_path: Path) -> None:
    url = "https://www.nytimes.com/2015/01/04/sports/baseball/the-case-for-mattingly.html"
    document = {
        "data": [{"title": url, "paragraphs": [{"context": "He was a Yankee.", "qas": []}]}]
    }
    path = tmp_path / "nyt.json"
    path.write_text(json.dumps(document))
    for by_paragraph, title in (
        (False, "The case for mattingly"),
        (True, "The case for mattingly (1)"),
    ):
        (article,) = load_squad(path, by_paragraph=by_paragraph).articles
        assert (article.title, article.url, article.published) == (title, url, "2015-01-04")
        assert article.id.startswith("https-www.nytimes.com-2015-01-04-sports-")


def test_sampling_is_fixed_by_the_seed(tmp_path: Path) -> None:
    questions = load_squad(_squad(tmp_path, 40))
    first = questions.select(None, 10, seed=3).examples
    assert len(first) == 10
    assert first == questions.select(None, 10, seed=3).examples
    assert first != questions.select(None, 10, seed=4).examples


def test_a_file_that_is_not_squad_is_named(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"rows": []}')
    with pytest.raises(DatasetError, match="not a SQuAD JSON file"):
        load_squad(path)


def test_removal_takes_out_the_whole_gold_document_not_just_its_paragraph() -> None:
    def example(id: str, article: str, source: str) -> Example:
        return Example(id, f"question {id}?", ("x",), article, "dev", "x", source)

    whole = QuestionSet(
        "set",
        (example("q1", "w-1", "w"), example("q2", "w-2", "w"), example("q3", "v-1", "v")),
    )
    removal = with_removal(whole.select(None, 1, seed=3), whole)
    [asked, removed] = removal.examples
    assert removed.id == f"{asked.id}#removed" and not removed.answerable
    assert removed.question == asked.question and removed.article is None
    expected = ("w-1", "w-2") if asked.source == "w" else ("v-1",)
    assert removed.excluded == expected


def test_a_near_miss_asks_about_a_name_its_paragraph_lacks_and_must_abstain() -> None:
    paragraph = "France pledged three billion euros at the Paris summit in 2024."
    question, answers = "What did France pledge in 2024?", ("three billion euros",)
    asked = Example("q1", question, answers, "p1", "dev", paragraph)
    other = Example("q2", "Why did Germany and Japan vote in 1998?", ("x",), "p2", "dev", "x")
    no_name = Example("q3", "what was pledged?", ("x",), "p1", "dev", paragraph)
    unanswerable = Example("q4", "Who won in Italy in 1990?", (), None, "dev")
    whole = QuestionSet("set", (asked, other, no_name, unanswerable))
    for seed in range(20):
        [missed] = near_misses(
            QuestionSet("set", (asked, no_name, unanswerable)), whole, seed
        ).examples
        assert missed.id == "q1#near-miss" and not missed.answerable and missed.article is None
        # France or 2024 swapped for a name or number of the same kind the paragraph lacks
        swapped = {f"What did {name} pledge in 2024?" for name in ("Germany", "Japan", "Italy")}
        swapped |= {f"What did France pledge in {year}?" for year in ("1998", "1990")}
        assert missed.question in swapped
