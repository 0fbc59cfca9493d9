"""Ask every question of a set, judge the results, and aggregate them per variant."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eval.clients import Answerer, StoredArticle
from eval.datasets import Example, QuestionSet
from eval.metrics import (
    Judgement,
    Metrics,
    contains_answer,
    exact_match,
    f1_score,
    is_right_answer,
    percentile,
    summarise,
)
from rag.reader.model import SpanReader
from rag.types import Answer, Passage


class ArticleBook:
    """Looks up (once each) the stored articles that results cite."""

    def __init__(self, answerer: Answerer) -> None:
        self.answerer = answerer
        self._articles: dict[str, StoredArticle | None] = {}

    def get(self, article_id: str) -> StoredArticle | None:
        if article_id not in self._articles:
            self._articles[article_id] = self.answerer.article(article_id)
        return self._articles[article_id]

    def is_gold(self, article_id: str, gold: str | None) -> bool:
        """Whether the article is the gold one (by id, or by the stem of its file name)."""
        if gold is None:
            return True
        article = self.get(article_id)
        source_stem = Path(article.source).stem if article and article.source else None
        return gold in (article_id, source_stem)

    def cites_exactly(self, article_id: str, start: int, end: int, text: str) -> bool:
        """Whether the stored article's text at ``[start, end)`` is exactly ``text``."""
        article = self.get(article_id)
        return article is not None and article.text[start:end] == text


@dataclass(frozen=True)
class QuestionResult:
    """What happened to one question, kept per question in the JSON report."""

    id: str
    split: str
    question: str
    gold: tuple[str, ...]
    judgement: Judgement
    answers: tuple[tuple[str, float], ...]
    passage_ids: tuple[str, ...]


def _gold_rank(example: Example, passages: Sequence[Passage], book: ArticleBook) -> int | None:
    for rank, passage in enumerate(passages, start=1):
        if contains_answer(passage.text, example.answers) and book.is_gold(
            passage.article_id, example.article
        ):
            return rank
    return None


def _is_right(example: Example, answer: Answer, book: ArticleBook) -> bool:
    return is_right_answer(answer.text, example.answers) and book.is_gold(
        answer.article_id, example.article
    )


def judge(
    example: Example,
    passages: Sequence[Passage],
    answers: Sequence[Answer],
    latency_ms: float,
    book: ArticleBook,
) -> Judgement:
    """Reduce one question's passages (to the retrieval depth) and answers to a judgement.

    A passage counts as right when it contains a gold answer (SQuAD normalisation, whole
    words) and comes from the gold article; an answer when, from the gold article, it
    contains a gold answer or overlaps one by token F1 of at least one half.
    """
    top = answers[0].text if answers else ""
    return Judgement(
        answerable=example.answerable,
        gold_rank=_gold_rank(example, passages, book) if example.answerable else None,
        correct=tuple(_is_right(example, a, book) for a in answers),
        em=exact_match(top, example.answers) if answers else 0.0,
        f1=f1_score(top, example.answers) if answers else 0.0,
        citations_ok=sum(book.cites_exactly(a.article_id, a.start, a.end, a.text) for a in answers),
        citations=len(answers),
        latency_ms=latency_ms,
    )


@dataclass(frozen=True)
class RunOptions:
    """How questions are asked: answers at ``top_k`` (the service default), retrieval
    judged over the first ``depth`` passages (one extra call when they differ)."""

    top_k: int = 5
    depth: int = 10


def ask_all(
    answerer: Answerer,
    examples: Sequence[Example],
    options: RunOptions,
    on_question: Callable[[], None] | None = None,
) -> list[QuestionResult]:
    """Ask every question and judge it; latency is that of the answering call."""
    book = ArticleBook(answerer)
    results = []
    for example in examples:
        started = time.perf_counter()
        answered = answerer.ask(example.question, options.top_k, example.excluded)
        latency_ms = (time.perf_counter() - started) * 1000
        retrieved = (
            answered
            if options.depth == options.top_k
            else answerer.ask(example.question, options.depth, example.excluded)
        )
        judgement = judge(example, retrieved.passages, answered.answers, latency_ms, book)
        results.append(
            QuestionResult(
                id=example.id,
                split=example.split,
                question=example.question,
                gold=example.answers,
                judgement=judgement,
                answers=tuple((a.text, a.score) for a in answered.answers),
                passage_ids=tuple(p.passage_id for p in retrieved.passages),
            )
        )
        if on_question is not None:
            on_question()
    return results


@dataclass(frozen=True)
class VariantResult:
    """The metrics of one configuration on one question set, with the per-question detail."""

    variant: str
    dataset: str
    split: str
    metrics: Metrics
    questions: list[QuestionResult] = field(repr=False)
    source: str | None = None
    """The file whose articles' questions alone this result covers (a per-source
    breakdown, see :func:`by_source`); ``None``: every question of the split."""

    @staticmethod
    def of(
        variant: str,
        dataset: str,
        split: str,
        results: list[QuestionResult],
        source: str | None = None,
    ) -> VariantResult:
        return VariantResult(
            variant, dataset, split, summarise([r.judgement for r in results]), results, source
        )

    @property
    def title(self) -> str:
        """``set / split``, and the source file's stem for a per-source breakdown."""
        return f"{self.dataset} / {self.split}" + (f": {self.source}" if self.source else "")


def by_source(result: VariantResult, questions: QuestionSet) -> list[VariantResult]:
    """``result`` again over the questions of each file their gold article came from, when
    there are several (SQuADShifts: Wikipedia, Reddit, Amazon reviews), so that a mix does
    not hide a domain (``source``: the file's stem). None for a single file."""
    source_of = {article.id: article.source for article in questions.articles}
    sources = {
        e.id: source_of.get(e.article or next(iter(e.excluded), "")) for e in questions.examples
    }
    files = sorted({s for s in sources.values() if s is not None})
    if len(files) < 2:
        return []
    return [
        VariantResult.of(
            result.variant,
            result.dataset,
            result.split,
            [q for q in result.questions if sources.get(q.id) == file],
            source=Path(file).stem,
        )
        for file in files
    ]


@dataclass(frozen=True)
class ClosedResult:
    """The reader alone, given each question's own paragraph (closed context)."""

    dataset: str
    split: str
    questions: int
    exact_match: float
    f1: float
    refused: float
    """Share of questions whose "no answer" score beat the reader's best span."""
    latency_p50_ms: float | None
    """Per question, reading in batches of :data:`CLOSED_BATCH`."""


CLOSED_BATCH = 32


def read_closed(
    reader: SpanReader, dataset: str, split: str, examples: Sequence[Example]
) -> ClosedResult:
    """SQuAD EM and F1 of the reader's best span in each question's own paragraph."""
    em = f1 = refused = 0.0
    per_question: list[float] = []
    for begin in range(0, len(examples), CLOSED_BATCH):
        batch = examples[begin : begin + CLOSED_BATCH]
        started = time.perf_counter()
        readings = reader.read_pairs([e.question for e in batch], [e.context or "" for e in batch])
        per_question.extend([(time.perf_counter() - started) * 1000 / len(batch)] * len(batch))
        for example, reading in zip(batch, readings, strict=True):
            if reading is None or example.context is None:
                continue
            span = example.context[reading.start : reading.end]
            em += exact_match(span, example.answers)
            f1 += f1_score(span, example.answers)
            refused += reading.margin < 0
    n = max(len(examples), 1)
    return ClosedResult(
        dataset, split, len(examples), em / n, f1 / n, refused / n, percentile(per_question, 50)
    )
