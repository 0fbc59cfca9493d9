"""Hybrid retrieval: dense (FAISS) and lexical (BM25) candidates, fused into one ranking,
optionally re-scored by how close each chunk's best sentence is to the question."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from index.protocol import SearchView
from rag.settings import FusionMethod, RetrievalMode


@dataclass(frozen=True)
class ScoredChunk:
    """A retrieved chunk with its fused score and the two scores it came from."""

    rowid: int
    score: float
    dense: float
    lexical: float


def weighted_fusion(
    dense: npt.NDArray[np.float32], lexical: npt.NDArray[np.float32], dense_weight: float
) -> npt.NDArray[np.float32]:
    """Weighted sum of cosine similarity (clipped to [0, 1]) and BM25 scaled by its maximum.

    Both inputs are aligned arrays over the same candidates; the result is in [0, 1].
    """
    top = float(lexical.max()) if len(lexical) else 0.0
    lexical_norm = lexical / top if top > 0 else np.zeros_like(lexical)
    fused = dense_weight * np.clip(dense, 0.0, 1.0) + (1.0 - dense_weight) * lexical_norm
    return np.asarray(fused, dtype=np.float32)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = 60) -> dict[int, float]:
    """Reciprocal rank fusion of several rankings (ids best first).

    ``score(d) = sum 1 / (k + rank)``, divided by its maximum possible value (rank 1 in
    every ranking) so that scores lie in [0, 1].
    """
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    best = len(rankings) / (k + 1)
    return {item: score / best for item, score in fused.items()}


class ChunkScorer(Protocol):
    """Scores chunks (by row id) for a question, in [0, 1]."""

    def __call__(
        self, rowids: Sequence[int], query_vector: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]: ...


SentenceVectorLookup = Callable[[Sequence[int]], dict[int, npt.NDArray[np.float32]]]
"""Finds the stored sentence vectors of chunks, by row id."""


class BestSentenceScorer:
    """Scores a chunk by the cosine similarity of its sentence closest to the question.

    A chunk embeds as the average of everything it says; a question usually asks about
    one sentence, which this finds among the sentence vectors stored at ingest.
    """

    def __init__(self, sentence_vectors: SentenceVectorLookup) -> None:
        self.sentence_vectors = sentence_vectors

    def __call__(
        self, rowids: Sequence[int], query_vector: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        found = self.sentence_vectors(rowids)
        scores = np.zeros(len(rowids), dtype=np.float32)
        for position, rowid in enumerate(rowids):
            vectors = found.get(rowid)
            if vectors is not None and len(vectors):
                scores[position] = min(max(float(np.max(vectors @ query_vector)), 0.0), 1.0)
        return scores


class Retriever:
    """Finds the chunks most relevant to a question.

    Given a ``rescorer``, the best ``rescore_depth`` chunks of the fused ranking are
    re-ranked by ``(fused + rescore_weight * rescorer) / (1 + rescore_weight)``.
    """

    def __init__(
        self,
        mode: RetrievalMode = "hybrid",
        fusion: FusionMethod = "weighted",
        dense_weight: float = 0.5,
        rrf_k: int = 60,
        candidate_pool: int = 50,
        rescore_weight: float = 1.0,
        rescore_depth: int = 20,
    ) -> None:
        self.mode = mode
        self.fusion = fusion
        self.dense_weight = dense_weight
        self.rrf_k = rrf_k
        self.candidate_pool = candidate_pool
        self.rescore_weight = rescore_weight
        self.rescore_depth = rescore_depth

    def retrieve(
        self,
        store: SearchView,
        query: str,
        query_vector: npt.NDArray[np.float32],
        top_k: int,
        allowed: Collection[int] | None = None,
        rescorer: ChunkScorer | None = None,
    ) -> list[ScoredChunk]:
        """The ``top_k`` best chunks of a store view, best first; ``allowed`` restricts
        the row ids."""
        pool = max(top_k, self.candidate_pool)
        _, dense_ids = store.dense_search(query_vector, pool, allowed)
        lexical_rowids, bm25_all = store.lexical_scores(query, allowed)
        lexical_ids = lexical_rowids[_top_positive(bm25_all, pool)]
        if self.mode == "dense":
            candidates = dense_ids
        elif self.mode == "lexical":
            candidates = lexical_ids
        else:
            candidates = np.unique(np.concatenate([dense_ids, lexical_ids]))
        if len(candidates) == 0:
            return []
        dense = store.similarity(query_vector, candidates)
        bm25 = _aligned(lexical_rowids, bm25_all, candidates)
        top_bm25 = float(bm25_all.max()) if len(bm25_all) else 0.0
        lexical_norm = bm25 / top_bm25 if top_bm25 > 0 else np.zeros_like(bm25)

        if self.mode == "dense":
            fused = np.clip(dense, 0.0, 1.0)
        elif self.mode == "lexical":
            fused = lexical_norm
        elif self.fusion == "rrf":
            rrf = reciprocal_rank_fusion([dense_ids.tolist(), lexical_ids.tolist()], self.rrf_k)
            fused = np.array([rrf[int(c)] for c in candidates], dtype=np.float32)
        else:
            fused = weighted_fusion(dense, bm25, self.dense_weight)
        order = np.argsort(-fused, kind="stable")[:top_k]
        if rescorer is not None:
            order = np.argsort(-fused, kind="stable")[: max(top_k, self.rescore_depth)]
            extra = rescorer([int(c) for c in candidates[order]], query_vector)
            fused = fused.copy()
            fused[order] = (fused[order] + self.rescore_weight * extra) / (1 + self.rescore_weight)
            order = order[np.argsort(-fused[order], kind="stable")][:top_k]
        return [
            ScoredChunk(
                rowid=int(candidates[i]),
                score=float(np.clip(fused[i], 0.0, 1.0)),
                dense=float(dense[i]),
                lexical=float(lexical_norm[i]),
            )
            for i in order
        ]


def _aligned(
    rowids: npt.NDArray[np.int64], scores: npt.NDArray[np.float32], wanted: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    """The scores of ``wanted`` row ids, given scores of the sorted ``rowids`` (0 where
    a row id has none)."""
    found = np.zeros(len(wanted), dtype=np.float32)
    if len(rowids):
        positions = np.clip(np.searchsorted(rowids, wanted), 0, len(rowids) - 1)
        hit = rowids[positions] == wanted
        found[hit] = scores[positions[hit]]
    return found


def _top_positive(scores: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.int64]:
    """Positions of the ``k`` highest positive scores, best first."""
    positive = np.flatnonzero(scores > 0)
    if len(positive) > k:
        positive = positive[np.argpartition(-scores[positive], k - 1)[:k]]
    return positive[np.argsort(-scores[positive], kind="stable")].astype(np.int64)
