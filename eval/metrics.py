"""Answer and retrieval metrics: SQuAD normalisation, EM/F1, recall@k, MRR, abstention.

Everything here is a pure function of small records, so each metric can be checked by
hand on a few cases (see ``tests/eval/test_metrics.py``).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation) | set("\u2018\u2019\u201c\u201d\u2013\u2014\u2026")
RECALL_DEPTHS = (1, 5, 10)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower case, no punctuation, no articles, single spaces.

    Typographic quotes and dashes count as punctuation too (news text is full of them).
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def contains_answer(text: str, answers: Iterable[str]) -> bool:
    """Whether ``text`` holds one of the answers as whole words, after normalisation."""
    haystack = f" {normalize_answer(text)} "
    return any(
        (needle := normalize_answer(answer)) and f" {needle} " in haystack for answer in answers
    )


def exact_match(prediction: str, answers: Iterable[str]) -> float:
    """SQuAD exact match: 1.0 if the normalised prediction equals a normalised answer."""
    normalised = normalize_answer(prediction)
    return float(any(normalised == normalize_answer(a) for a in answers))


def f1_score(prediction: str, answers: Iterable[str]) -> float:
    """SQuAD token F1 of the prediction against the best-matching answer."""
    predicted = normalize_answer(prediction).split()
    best = 0.0
    for answer in answers:
        gold = normalize_answer(answer).split()
        common = sum((Counter(predicted) & Counter(gold)).values())
        if common:
            precision, recall = common / len(predicted), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


RIGHT_F1 = 0.5
"""Token F1 against a gold answer at which a span answer counts as right."""


def is_right_answer(text: str, answers: Iterable[str]) -> bool:
    """Whether an answer is right: it contains a gold answer (a sentence, or a span that
    says a little more), or its token F1 against one reaches :data:`RIGHT_F1` (a span
    that says a little less: "three billion euros" for "three billion euros in aid")."""
    golds = list(answers)
    return contains_answer(text, golds) or (bool(golds) and f1_score(text, golds) >= RIGHT_F1)


MissKind = Literal[
    "refused", "gold passage first", "gold passage lower", "gold passage not returned"
]
MISS_KINDS: tuple[MissKind, ...] = get_args(MissKind)


@dataclass(frozen=True)
class Judgement:
    """How the pipeline did on one question, reduced to what the metrics need.

    ``gold_rank`` is the 1-based rank of the first returned passage containing a gold
    answer (``None``: none did); ``correct`` says, per returned answer (best first),
    whether it contains a gold answer; ``em``/``f1`` are of the top answer (0 if none).
    """

    answerable: bool
    gold_rank: int | None
    correct: tuple[bool, ...]
    em: float
    f1: float
    citations_ok: int
    citations: int
    latency_ms: float

    @property
    def abstained(self) -> bool:
        return not self.correct

    @property
    def miss(self) -> MissKind | None:
        """Where an answerable question's top answer went wrong (``None``: it is right, or
        the question is unanswerable): refused; answered wrongly although the first
        passage returned is a gold one (the reader's miss); with a gold passage only lower
        down (another passage's answer won); or with no gold passage returned at all
        (retrieval's miss)."""
        if not self.answerable or self.correct[:1] == (True,):
            return None
        if self.abstained:
            return "refused"
        if self.gold_rank is None:
            return "gold passage not returned"
        return "gold passage first" if self.gold_rank == 1 else "gold passage lower"


@dataclass(frozen=True)
class Metrics:
    """One row of the results table; ``None`` where a metric does not apply."""

    questions: int
    answerable: int
    unanswerable: int
    recall: dict[int, float | None]
    mrr: float | None
    accuracy: float | None
    top3_accuracy: float | None
    exact_match: float | None
    f1: float | None
    abstention_precision: float | None
    abstention_recall: float | None
    false_abstention: float | None
    citation: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    misses: dict[MissKind, float] | None
    """Share of the answerable questions per :attr:`Judgement.miss` kind (with
    ``accuracy``, they add up to 1); ``None`` without answerable questions."""


def recall_at_k(ranks: Sequence[int | None], k: int) -> float | None:
    """Share of questions whose first gold passage is ranked ``k`` or better."""
    if not ranks:
        return None
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks)


def mean_reciprocal_rank(ranks: Sequence[int | None]) -> float | None:
    """Mean of ``1 / rank`` of the first gold passage (0 when none was returned)."""
    if not ranks:
        return None
    return sum(1.0 / r for r in ranks if r is not None) / len(ranks)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _share(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def summarise(judgements: Sequence[Judgement]) -> Metrics:
    """Aggregate per-question judgements into the metrics table's row.

    Retrieval and answer metrics are over answerable questions (an abstention counts as
    a wrong answer); abstention precision is over the questions the pipeline abstained
    on, abstention recall over the unanswerable ones, and false abstention over the
    answerable ones.
    """
    answerable = [j for j in judgements if j.answerable]
    unanswerable = [j for j in judgements if not j.answerable]
    abstained = [j for j in judgements if j.abstained]
    ranks = [j.gold_rank for j in answerable]
    citations = sum(j.citations for j in judgements)
    latencies = [j.latency_ms for j in judgements]
    return Metrics(
        questions=len(judgements),
        answerable=len(answerable),
        unanswerable=len(unanswerable),
        recall={k: recall_at_k(ranks, k) for k in RECALL_DEPTHS},
        mrr=mean_reciprocal_rank(ranks),
        accuracy=_share([j.correct[:1] == (True,) for j in answerable]),
        top3_accuracy=_share([any(j.correct[:3]) for j in answerable]),
        exact_match=_mean([j.em for j in answerable]),
        f1=_mean([j.f1 for j in answerable]),
        abstention_precision=(
            _share([not j.answerable for j in abstained]) if unanswerable else None
        ),
        abstention_recall=_share([j.abstained for j in unanswerable]),
        false_abstention=_share([j.abstained for j in answerable]),
        citation=sum(j.citations_ok for j in judgements) / citations if citations else None,
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        misses=_miss_shares(answerable),
    )


def _miss_shares(answerable: Sequence[Judgement]) -> dict[MissKind, float] | None:
    if not answerable:
        return None
    counts = Counter(j.miss for j in answerable)  # one pass; None counts the right answers
    return {kind: counts[kind] / len(answerable) for kind in MISS_KINDS}


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass(frozen=True)
class ReliabilityBin:
    """Answers whose score fell in ``[low, high)``: how many, mean score, share right."""

    low: float
    high: float
    count: int
    mean_score: float | None
    accuracy: float | None


def reliability(
    scores: Sequence[float], correct: Sequence[bool], bins: int = 10
) -> list[ReliabilityBin]:
    """Bin scores in [0, 1] into equal-width bins (1.0 goes in the last one)."""
    result = []
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = [
            (s, c)
            for s, c in zip(scores, correct, strict=True)
            if low <= s < high or (b == bins - 1 and s == high)
        ]
        result.append(
            ReliabilityBin(
                low=low,
                high=high,
                count=len(members),
                mean_score=_mean([s for s, _ in members]),
                accuracy=_share([c for _, c in members]),
            )
        )
    return result


def expected_calibration_error(bins: Sequence[ReliabilityBin]) -> float | None:
    """Count-weighted mean gap between mean score and accuracy over the bins."""
    total = sum(b.count for b in bins)
    if not total:
        return None
    return (
        sum(
            b.count * abs(b.mean_score - b.accuracy)
            for b in bins
            if b.count and b.mean_score is not None and b.accuracy is not None
        )
        / total
    )
