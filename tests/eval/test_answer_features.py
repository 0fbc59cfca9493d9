"""What the harness work added to ``rag``: the answer-kind feature (``rag.extraction``)
and best-sentence re-scoring (``rag.retrieval``). The questions here are made up for
the tests: none comes from the evaluation question sets.

(Their tests sit here, next to the harness that measures them, since ``tests/rag``
belongs to the core pipeline's owners.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from index.segments import BaseSegment, Delta, SegmentView
from rag.embedding import Embedder
from rag.extraction import answer_kind, offers_kind
from rag.retrieval import BestSentenceScorer, Retriever


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How many ships left the port of Gdansk?", "number"),
        ("How long did the strike last?", "number"),
        ("When did the council approve the budget?", "date"),
        ("In what year did the bridge open?", "date"),
        ("Who chaired the committee hearing?", "name"),
        ("In which cities did the protests spread?", "name"),
        ("Where was the summit held?", "name"),
        ("Why did the airline cancel the flights?", None),
        ("budget vote outcome", None),
    ],
)
def test_answer_kind_of_questions(question: str, kind: str | None) -> None:
    assert answer_kind(question) == kind


def test_offers_kind_needs_something_new_of_the_asked_kind() -> None:
    question = "How many ships left the port?"
    assert offers_kind("Twelve ships left, 14 more are waiting.", "number", question)
    assert not offers_kind("Ships left the port at dawn.", "number", question)
    # a name already in the question is not an answer to "who"
    who = "Who met Novak in Vienna?"
    assert not offers_kind("Then he met Novak.", "name", who)
    assert offers_kind("Then Novak met Halvorsen.", "name", who)
    assert offers_kind("Anything at all.", None, "Why?")


def _tiny_index() -> SegmentView:
    delta = Delta(2)
    vectors = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    delta.append([1, 2], vectors, ["victory plan nato", "victory plan brussels"])
    return SegmentView.of(1, BaseSegment.empty(2), delta, np.zeros(0, np.int64))


def test_rescoring_by_best_sentence_reorders_the_fused_ranking() -> None:
    view = _tiny_index()
    query = np.array([1.0, 0.0], dtype=np.float32)
    plain = Retriever().retrieve(view, "victory plan", query, top_k=2)
    assert [c.rowid for c in plain] == [1, 2]

    def prefers_two(rowids: Sequence[int], _: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.array([1.0 if r == 2 else 0.0 for r in rowids], dtype=np.float32)

    rescored = Retriever(rescore_weight=1.0).retrieve(
        view, "victory plan", query, top_k=2, rescorer=prefers_two
    )
    assert [c.rowid for c in rescored] == [2, 1]
    assert all(0.0 <= c.score <= 1.0 for c in rescored)


def test_best_sentence_scorer_takes_the_closest_sentence(embedder: Embedder) -> None:
    text = "Bananas are yellow. Zelensky presented his victory plan in Brussels."
    pooled = embedder.embed_passages([text], [[(0, 19), (20, len(text))]])
    scorer = BestSentenceScorer(lambda rowids: {r: pooled.sentences[0] for r in rowids})
    question = embedder.embed_query("Where did Zelensky present his victory plan?")
    (best,) = scorer([7], question)
    bananas, zelensky = pooled.sentences[0] @ question
    assert best == pytest.approx(float(zelensky), abs=1e-6) and zelensky > bananas
