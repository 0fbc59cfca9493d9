"""Fusion of dense and lexical rankings, and retrieval modes on the sample index."""

from __future__ import annotations

import numpy as np
import pytest

from rag.pipeline import Pipeline
from rag.retrieval import Retriever, reciprocal_rank_fusion, weighted_fusion


def test_reciprocal_rank_fusion_by_hand() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1]], k=1)
    # 1: 1/2 + 1/3, 2: 1/3, 3: 1/4 + 1/2; maximum possible 2 * 1/2
    assert fused[1] == pytest.approx((1 / 2 + 1 / 3) / 1.0)
    assert fused[2] == pytest.approx((1 / 3) / 1.0)
    assert fused[3] == pytest.approx((1 / 4 + 1 / 2) / 1.0)
    assert reciprocal_rank_fusion([[7], [7]], k=60) == {7: pytest.approx(1.0)}


def test_weighted_fusion_by_hand() -> None:
    dense = np.array([0.8, -0.2, 0.4], dtype=np.float32)
    bm25 = np.array([2.0, 4.0, 0.0], dtype=np.float32)
    fused = weighted_fusion(dense, bm25, dense_weight=0.25)
    assert fused == pytest.approx([0.25 * 0.8 + 0.75 * 0.5, 0.75 * 1.0, 0.25 * 0.4])
    assert weighted_fusion(dense, np.zeros(3, np.float32), 0.5) == pytest.approx([0.4, 0.0, 0.2])


@pytest.mark.parametrize(
    ("mode", "fusion"),
    [("hybrid", "weighted"), ("hybrid", "rrf"), ("dense", "weighted"), ("lexical", "weighted")],
)
def test_every_mode_finds_the_macron_passage(
    sample_pipeline: Pipeline, mode: str, fusion: str
) -> None:
    view = sample_pipeline.refresh()
    assert view is not None
    question = "What aid did Macron commit?"
    retriever = Retriever(mode=mode, fusion=fusion)  # type: ignore[arg-type]
    vector = sample_pipeline.embedder.embed_query(question)
    hits = retriever.retrieve(view, question, vector, top_k=3)
    assert 1 <= len(hits) <= 3
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(0.0 <= h.score <= 1.0 for h in hits)
    texts = view.chunks([h.rowid for h in hits])
    assert "three billion euros" in texts[hits[0].rowid].chunk.text


def test_filter_restricts_candidates(sample_pipeline: Pipeline) -> None:
    from records import ArticleFilter

    result = sample_pipeline.ask(
        "What aid did Macron commit?", where=ArticleFilter(source="victory-plan-game-is-up.txt")
    )
    sources = {sample_pipeline.article(p.article_id).source for p in result.passages}  # type: ignore[union-attr]
    assert sources == {"victory-plan-game-is-up.txt"}
    nothing = sample_pipeline.ask("Macron", where=ArticleFilter(article_ids=("missing",)))
    assert nothing.passages == [] and nothing.answers == []


def test_lexical_only_query_with_no_known_words(sample_pipeline: Pipeline) -> None:
    view = sample_pipeline.refresh()
    assert view is not None
    assert len(view.lexical_scores("zzqx qqwv")[0]) == 0
    assert len(view.lexical_scores("the of and")[0]) == 0
