"""A quick harness run on a slice of our question set, in process and over HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from eval.clients import HttpAnswerer, InProcessAnswerer
from eval.datasets import Example, QuestionSet, load_jsonl
from eval.harness import QuestionResult, RunOptions, VariantResult, ask_all, by_source
from eval.metrics import Judgement, summarise
from rag.articles import create_article
from rag.embedding import Embedder
from rag.pipeline import Pipeline
from rag.settings import PROJECT_ROOT, Settings
from rag.types import AskResult

SAMPLE = PROJECT_ROOT / "eval" / "data" / "sample.jsonl"


@pytest.fixture(scope="module")
def dev_slice() -> list[Example]:
    """Twelve dev questions: nine answerable, three not."""
    dev = [e for e in load_jsonl(SAMPLE).examples if e.split == "dev"]
    return [e for e in dev if e.answerable][:9] + [e for e in dev if not e.answerable][:3]


def test_in_process_run_on_a_dev_slice(sample_pipeline: Pipeline, dev_slice: list[Example]) -> None:
    results = ask_all(InProcessAnswerer(sample_pipeline), dev_slice, RunOptions(top_k=5, depth=10))
    metrics = VariantResult.of("default", "sample", "dev", results).metrics
    assert (metrics.answerable, metrics.unanswerable) == (9, 3)
    assert metrics.citation == 1.0  # every answer's offsets reproduce its text
    assert metrics.recall[10] == 1.0  # three short articles: the gold passage is always there
    assert metrics.recall[1] is not None and metrics.recall[1] >= 0.6
    assert metrics.accuracy is not None and metrics.accuracy >= 0.5
    ranks = [r.judgement.gold_rank for r in results]
    assert all(rank is None for rank, e in zip(ranks, dev_slice, strict=True) if not e.answerable)


def test_reader_answers_are_spans_inside_the_sentence_answers(
    sample_pipeline: Pipeline, embedder: Embedder, dev_slice: list[Example]
) -> None:
    settings = Settings(index_dir=sample_pipeline.settings.index_dir, answerer="sentence")
    sentences = Pipeline.open(settings, embedder)
    options = RunOptions(top_k=5, depth=5)
    span_results = ask_all(InProcessAnswerer(sample_pipeline), dev_slice, options)
    sentence_results = ask_all(InProcessAnswerer(sentences), dev_slice, options)
    assert summarise([r.judgement for r in span_results]).citation == 1.0
    shorter = sum(
        len(span.answers[0][0]) < len(sentence.answers[0][0])
        for span, sentence in zip(span_results, sentence_results, strict=True)
        if span.answers and sentence.answers
    )
    assert shorter >= 5  # the reader points at the words, not the whole sentence
    for question in dev_slice:
        result = sample_pipeline.ask(question.question)
        for answer in result.answers:
            context = answer.context
            assert context.start <= answer.start < answer.end <= context.end
            assert context.text[answer.start - context.start : answer.end - context.start] == (
                answer.text
            )


def test_a_wrong_offset_fails_the_citation_check(
    sample_pipeline: Pipeline, dev_slice: list[Example]
) -> None:
    class Shifted(InProcessAnswerer):
        def ask(self, question: str, top_k: int, excluded: tuple[str, ...] = ()) -> AskResult:
            result = super().ask(question, top_k, excluded)
            for answer in result.answers:
                answer.start += 1
            return result

    results = ask_all(Shifted(sample_pipeline), dev_slice[:3], RunOptions(top_k=5, depth=5))
    metrics = summarise([r.judgement for r in results])
    assert metrics.citation == 0.0


class StubService(BaseHTTPRequestHandler):
    """Answers every question with one canned, correctly cited answer."""

    article: ClassVar[dict[str, str]] = {
        "id": "a1",
        "text": "Zelensky met the EU's 27 leaders.",
        "source": "eu.txt",
    }
    asked: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.asked.append(body)
        passage = {
            "passage_id": "a1:0", "article_id": "a1", "title": "EU", "url": None,
            "text": self.article["text"], "start": 0, "end": 33, "score": 0.9,
        }  # fmt: skip
        answer = {
            "text": "Zelensky met the EU's 27 leaders.", "score": 0.8, "article_id": "a1",
            "title": "EU", "url": None, "start": 0, "end": 33, "passage_id": "a1:0",
            "context": {"text": "Zelensky met the EU's 27 leaders.", "start": 0, "end": 33},
        }  # fmt: skip
        self._send(200, {"question": body["question"], "answers": [answer],
                         "passages": [passage], "took_ms": 1.0})  # fmt: skip

    def do_GET(self) -> None:
        if self.path == "/articles/a1":
            self._send(200, {**self.article, "title": "EU", "url": None})
        else:
            self._send(404, {"detail": "not found"})

    def _send(self, status: int, payload: dict[str, object]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


@dataclass(frozen=True)
class Stub:
    """Where the stub listens, and the request bodies it received."""

    url: str
    asked: list[dict[str, object]]


@pytest.fixture
def stub() -> Iterator[Stub]:
    StubService.asked.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Stub(f"http://127.0.0.1:{server.server_address[1]}", StubService.asked)
    finally:
        server.shutdown()
        server.server_close()


def test_http_client_speaks_the_contract(stub: Stub) -> None:
    questions = [
        Example("q1", "How many EU leaders?", ("27",), "eu", "dev"),
        Example("q2", "Who won the World Cup?", (), None, "dev"),
    ]
    answerer = HttpAnswerer(stub.url)
    try:
        results = ask_all(answerer, questions, RunOptions(top_k=5, depth=10))
    finally:
        answerer.close()
    assert stub.asked == [
        {"question": "How many EU leaders?", "top_k": 5},
        {"question": "How many EU leaders?", "top_k": 10},
        {"question": "Who won the World Cup?", "top_k": 5},
        {"question": "Who won the World Cup?", "top_k": 10},
    ]
    first, second = (r.judgement for r in results)
    assert first.gold_rank == 1  # gold article matched by the stem of its source file
    assert first.correct == (True,)
    assert (first.citations_ok, first.citations) == (1, 1)
    assert second.correct == (False,)  # answered an unanswerable question
    assert not second.abstained


def test_http_client_reports_unknown_articles(stub: Stub) -> None:
    answerer = HttpAnswerer(stub.url)
    try:
        assert answerer.article("missing") is None
        stored = answerer.article("a1")
    finally:
        answerer.close()
    assert stored is not None and stored.source == "eu.txt"


def _asked(example: Example, right: bool) -> QuestionResult:
    judgement = Judgement(example.answerable, 1, (right,), float(right), float(right), 1, 1, 5.0)
    return QuestionResult(example.id, "dev", example.question, example.answers, judgement, (), ())


def test_a_set_mixing_source_files_is_broken_down_by_file() -> None:
    wiki = create_article("Bridge", "The bridge opened in 1932.", id="w1", source="new_wiki.json")
    review = create_article("Kettle", "It boils fast.", id="a1", source="amazon.json")
    examples = (
        Example("q1", "When did the bridge open?", ("1932",), "w1", "dev"),
        Example("q2", "How fast does it boil?", ("fast",), "a1", "dev"),
        Example("q3", "How fast does it boil?", (), None, "dev", excluded=("a1",)),
    )
    questions = QuestionSet("shifts", examples, (wiki, review))
    asked = [_asked(e, right) for e, right in zip(examples, (True, False, False), strict=True)]
    whole = VariantResult.of("reader", "shifts", "dev", asked)
    parts = by_source(whole, questions)
    assert [(p.source, p.title) for p in parts] == [
        ("amazon", "shifts / dev: amazon"),
        ("new_wiki", "shifts / dev: new_wiki"),
    ]
    amazon, new_wiki = parts
    assert [q.id for q in amazon.questions] == ["q2", "q3"]  # removal: by its excluded article
    assert (amazon.metrics.answerable, amazon.metrics.unanswerable) == (1, 1)
    assert new_wiki.metrics.accuracy == 1.0 and amazon.metrics.accuracy == 0.0
    one_file = QuestionSet("squad", examples[:1], (wiki,))
    assert by_source(whole, one_file) == []
