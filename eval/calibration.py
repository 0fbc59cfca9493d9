"""Fit the answer-score calibration and the abstention threshold on dev questions.

The answerer (the span reader, or the sentence extractor) scores each candidate with a
logistic model over its features; here that model is refitted (maximum likelihood,
small L2 penalty) on the candidates of dev questions, labelled right when they come
from the gold article and match a gold answer. The threshold is then chosen on the
best candidate of each dev question, answerable or not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

from eval.clients import InProcessAnswerer
from eval.datasets import Example
from eval.harness import ArticleBook
from eval.metrics import is_right_answer
from rag.answering import Calibration
from rag.pipeline import Pipeline
from records import ArticleFilter

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Candidates:
    """Answer candidates of a group of questions: one row of features each (named by
    ``names``), its label, and the question it belongs to (an index into ``answerable``)."""

    names: tuple[str, ...]
    features: Floats
    labels: npt.NDArray[np.bool_]
    question: npt.NDArray[np.int64]
    answerable: npt.NDArray[np.bool_]

    def best_scores(self, calibration: Calibration) -> Floats:
        """Each question's highest candidate score (0 for a question with no candidate)."""
        scores = np.array(
            [
                calibration.probability(dict(zip(self.names, row, strict=True)))
                for row in self.features
            ]
        )
        best = np.zeros(len(self.answerable))
        np.maximum.at(best, self.question, scores)
        return best


def collect(
    pipeline: Pipeline,
    examples: Sequence[Example],
    top_k: int,
    on_question: Callable[[], None] | None = None,
) -> Candidates:
    """Every answer candidate the pipeline weighs for each question, with its features."""
    book = ArticleBook(InProcessAnswerer(pipeline))
    names = pipeline.answer_features
    rows: list[list[float]] = []
    labels: list[bool] = []
    owners: list[int] = []
    for number, example in enumerate(examples):
        where = ArticleFilter(excluded_article_ids=example.excluded) if example.excluded else None
        for candidate in pipeline.candidates(example.question, top_k=top_k, where=where):
            rows.append([candidate.features[name] for name in names])
            labels.append(
                example.answerable
                and is_right_answer(candidate.text, example.answers)
                and book.is_gold(candidate.article_id, example.article)
            )
            owners.append(number)
        if on_question is not None:
            on_question()
    return Candidates(
        names=names,
        features=np.array(rows, dtype=np.float64).reshape(-1, len(names)),
        labels=np.array(labels, dtype=bool),
        question=np.array(owners, dtype=np.int64),
        answerable=np.array([e.answerable for e in examples], dtype=bool),
    )


def fit_logistic(
    features: Floats, labels: npt.NDArray[np.bool_], l2: float = 1.0
) -> tuple[float, Floats]:
    """Maximum-likelihood logistic regression with an L2 penalty on the weights."""
    x = np.hstack([np.ones((len(features), 1)), features])
    y = labels.astype(np.float64)

    def loss(theta: Floats) -> tuple[float, Floats]:
        z = x @ theta
        nll = float(np.sum(np.logaddexp(0.0, z) - y * z)) + 0.5 * l2 * float(theta[1:] @ theta[1:])
        grad = x.T @ (1.0 / (1.0 + np.exp(-z)) - y)
        grad[1:] += l2 * theta[1:]
        return nll, grad

    solution = minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B")
    return float(solution.x[0]), np.asarray(solution.x[1:], dtype=np.float64)


@dataclass(frozen=True)
class TradeOff:
    """Abstention behaviour at one threshold, over a set of questions."""

    threshold: float
    abstention_precision: float | None
    abstention_recall: float | None
    false_abstention: float | None


def trade_off(best: Floats, answerable: npt.NDArray[np.bool_], threshold: float) -> TradeOff:
    """What abstaining below ``threshold`` does to answerable and unanswerable questions."""
    abstain = best < threshold
    unanswerable = ~answerable
    return TradeOff(
        threshold=threshold,
        abstention_precision=float(np.mean(unanswerable[abstain])) if abstain.any() else None,
        abstention_recall=float(np.mean(abstain[unanswerable])) if unanswerable.any() else None,
        false_abstention=float(np.mean(abstain[answerable])) if answerable.any() else None,
    )


def choose_threshold(
    best: Floats, answerable: npt.NDArray[np.bool_], max_false_abstention: float
) -> TradeOff:
    """The threshold that abstains on the most unanswerable questions while abstaining on
    at most ``max_false_abstention`` of the answerable ones (and, among those, on the
    fewest answerable ones). Every threshold between two observed scores does the same
    on these questions: the middle of the best range is taken, so the choice is not on
    a knife edge."""
    values = np.unique(np.concatenate([[0.0, 1.0], best]))
    cuts = (values[:-1] + values[1:]) / 2
    options = [trade_off(best, answerable, float(t)) for t in cuts]
    allowed = [o for o in options if (o.false_abstention or 0.0) <= max_false_abstention]
    key = max(((o.abstention_recall or 0.0), -(o.false_abstention or 0.0)) for o in allowed)
    tied = [
        o.threshold
        for o in allowed
        if ((o.abstention_recall or 0.0), -(o.false_abstention or 0.0)) == key
    ]
    return trade_off(best, answerable, (min(tied) + max(tied)) / 2)


@dataclass(frozen=True)
class Fitted:
    """A fitted calibration, how it was obtained, and its trade-off on the dev questions."""

    calibration: Calibration
    chosen: TradeOff
    curve: list[TradeOff]
    provenance: dict[str, object]

    def record(self) -> dict[str, object]:
        """JSON-ready summary for the report."""
        return {
            "bias": self.calibration.bias,
            "weights": self.calibration.weights,
            "threshold": self.calibration.threshold,
            "chosen": asdict(self.chosen),
            "trade_off": [asdict(point) for point in self.curve],
            "provenance": self.provenance,
        }


def top_per_question(
    scores: Floats, question: npt.NDArray[np.int64], n: int
) -> npt.NDArray[np.bool_]:
    """Mask of the ``n`` highest-scoring rows of each question."""
    order = np.lexsort((-scores, question))
    first = np.searchsorted(question[order], question[order], side="left")
    keep = np.zeros(len(scores), dtype=bool)
    keep[order[np.arange(len(order)) - first < n]] = True
    return keep


def fit(
    groups: Sequence[tuple[str, Candidates]], max_false_abstention: float, returned: int = 3
) -> Fitted:
    """Fit the weights on every candidate of every group (that decides the ranking), then
    rescale the logit (Platt) on the ``returned`` best candidates of each question, the
    ones an answer can be, so that the scores users see are calibrated; then choose the
    threshold on the groups that have unanswerable questions (all groups if none has)."""
    features = np.vstack([c.features for _, c in groups])
    labels = np.concatenate([c.labels for _, c in groups])
    offsets = np.cumsum([0] + [len(c.answerable) for _, c in groups])
    question = np.concatenate([c.question + o for (_, c), o in zip(groups, offsets, strict=False)])
    names = groups[0][1].names
    bias, weights = fit_logistic(features, labels)
    logits = bias + features @ weights
    top = top_per_question(logits, question, returned)
    shift, (scale,) = fit_logistic(logits[top, None], labels[top], l2=0.0)
    if scale > 0:
        bias, weights = scale * bias + shift, scale * weights
    model = Calibration(bias, {n: float(w) for n, w in zip(names, weights, strict=True)}, 0.5)
    with_unanswerable = [c for _, c in groups if not c.answerable.all()] or [c for _, c in groups]
    best = np.concatenate([c.best_scores(model) for c in with_unanswerable])
    answerable = np.concatenate([c.answerable for c in with_unanswerable])
    chosen = choose_threshold(best, answerable, max_false_abstention)
    calibrated = Calibration(bias, model.weights, round(chosen.threshold, 4))
    provenance: dict[str, object] = {
        "method": "logistic regression (L2 1.0) on answer candidates of dev questions, "
        "label = from the gold article and contains a gold answer or has token F1 >= 0.5 "
        "with one; unanswerable dev questions include answerable ones asked without their "
        "gold document and near misses (a name or number the paragraph holds swapped for "
        "one it lacks); logit rescaled (Platt) on "
        f"the {returned} best candidates of each question; threshold = most "
        f"abstentions on unanswerable dev questions with false abstention <= "
        f"{max_false_abstention}",
        "fitted_on": {
            name: {
                "questions": len(c.answerable),
                "unanswerable": int((~c.answerable).sum()),
                "candidates": len(c.labels),
                "positives": int(c.labels.sum()),
            }
            for name, c in groups
        },
        "dev_trade_off": asdict(chosen),
        "command": "rag eval --calibrate",
    }
    curve = [trade_off(best, answerable, t) for t in np.round(np.linspace(0.0, 1.0, 21), 2)]
    return Fitted(calibrated, chosen, curve, provenance)
