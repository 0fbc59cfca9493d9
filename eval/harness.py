"""Ask every question of a set, judge the results, and aggregate them per variant."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eval.clients import Answerer, StoredArticle
from eval.datasets import Example
from eval.metrics import Judgement, Metrics, contains_answer, exact_match, f1_score, summarise
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
    return contains_answer(answer.text, example.answers) and book.is_gold(
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

    A passage or answer counts as right when it contains a gold answer (SQuAD
    normalisation, whole words) and comes from the gold article.
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
        answered = answerer.ask(example.question, options.top_k)
        latency_ms = (time.perf_counter() - started) * 1000
        retrieved = (
            answered
            if options.depth == options.top_k
            else answerer.ask(example.question, options.depth)
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

    @staticmethod
    def of(variant: str, dataset: str, split: str, results: list[QuestionResult]) -> VariantResult:
        return VariantResult(
            variant, dataset, split, summarise([r.judgement for r in results]), results
        )
