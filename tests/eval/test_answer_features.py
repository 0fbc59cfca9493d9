"""What the harness work added to ``rag``: the answer-kind feature and answer spans
(``rag.extraction``) and best-sentence re-scoring (``rag.retrieval``).

(Their tests sit here, next to the harness that measures them, since ``tests/rag``
belongs to the core pipeline's owners.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from index.lexical import LexicalIndex
from index.vectors import VectorIndex
from rag.embedding import Embedder
from rag.extraction import answer_kind, answer_span, offers_kind
from rag.retrieval import BestSentenceScorer, Retriever


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How many EU leaders did Zelensky meet with?", "number"),
        ("How long did he give the West?", "number"),
        ("When did Zelensky meet Meloni?", "date"),
        ("In what year did Tesla demonstrate his system?", "date"),
        ("Who did Zelenskiy meet in London?", "name"),
        ("In which Russian cities are the plants?", "name"),
        ("Where did Zelensky pitch his plan?", "name"),
        ("Why is letting Kyiv into NATO a problem?", None),
        ("victory plan first point", None),
    ],
)
def test_answer_kind_of_questions(question: str, kind: str | None) -> None:
    assert answer_kind(question) == kind


def test_offers_kind_needs_something_new_of_the_asked_kind() -> None:
    question = "How many EU leaders did Zelensky meet with?"
    assert offers_kind("He met with the EU's 27 leaders.", "number", question)
    assert not offers_kind("Zelensky met EU leaders in Brussels.", "number", question)
    # a name already in the question is not an answer to "who"
    who = "Who met Meloni in Rome?"
    assert not offers_kind("Then he met Meloni.", "name", who)
    assert offers_kind("Then Meloni met Zelensky.", "name", who)
    assert offers_kind("Anything at all.", None, "Why?")


@pytest.mark.parametrize(
    ("question", "sentence", "span"),
    [
        (
            "How long did Zelenskiy give Western countries to sign off?",
            "Zelensky demanded that Western powers endorse his plan within three months.",
            "three months",
        ),
        (
            "On what date did Zelenskyy discuss the plan?",
            "Zelenskyy discussed the plan with NATO on Thursday, the 10th of October, in a bid.",
            "Thursday, the 10th of October",
        ),
        (
            "In which Russian cities are the munitions plants?",
            "They include Russian munitions factories in Tambov, Kazan, and Perm; airfields.",
            "Tambov, Kazan, and Perm",
        ),
        (
            "How big a loan did the EU approve?",
            "The EU approved loaning Ukraine up to 35 billion euros ($38 billion).",
            "35 billion euros",
        ),
    ],
)
def test_answer_span_by_hand(question: str, sentence: str, span: str) -> None:
    found = answer_span(sentence, answer_kind(question), question)
    assert found is not None
    assert sentence[found[0] : found[1]] == span


def test_no_span_without_an_answer_kind_or_a_new_token() -> None:
    assert answer_span("Because it would mean war.", None, "Why?") is None
    question = "How many leaders came?"
    assert answer_span("The leaders came.", answer_kind(question), question) is None


def _tiny_index() -> tuple[VectorIndex, LexicalIndex]:
    vectors = VectorIndex.empty(2)
    vectors.add(np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32), np.array([1, 2]))
    lexical = LexicalIndex.build([1, 2], ["victory plan nato", "victory plan brussels"])
    return vectors, lexical


def test_rescoring_by_best_sentence_reorders_the_fused_ranking() -> None:
    vectors, lexical = _tiny_index()
    query = np.array([1.0, 0.0], dtype=np.float32)
    plain = Retriever().retrieve(vectors, lexical, "victory plan", query, top_k=2)
    assert [c.rowid for c in plain] == [1, 2]

    def prefers_two(rowids: Sequence[int], _: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.array([1.0 if r == 2 else 0.0 for r in rowids], dtype=np.float32)

    rescored = Retriever(rescore_weight=1.0).retrieve(
        vectors, lexical, "victory plan", query, top_k=2, rescorer=prefers_two
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
