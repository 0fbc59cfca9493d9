"""The dense side of the index: FAISS inner-product search over normalised vectors."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt

VECTOR_INDEX_TYPE = "IDMap2,Flat(inner product)"


class VectorIndex:
    """Chunk vectors keyed by their SQLite row id (``IndexIDMap2`` over ``IndexFlatIP``)."""

    def __init__(self, index: faiss.Index) -> None:
        self.index = index

    @staticmethod
    def empty(dimension: int) -> VectorIndex:
        """A new index with no vectors."""
        return VectorIndex(faiss.IndexIDMap2(faiss.IndexFlatIP(dimension)))

    @property
    def dimension(self) -> int:
        return int(self.index.d)

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def copy(self) -> VectorIndex:
        """An independent copy, to be changed without touching this one."""
        return VectorIndex(faiss.clone_index(self.index))

    def add(self, vectors: npt.NDArray[np.float32], rowids: npt.NDArray[np.int64]) -> None:
        """Add vectors under the given ids."""
        if len(rowids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), rowids)

    def remove(self, rowids: Collection[int]) -> None:
        """Remove the vectors with these ids."""
        if rowids:
            self.index.remove_ids(faiss.IDSelectorBatch(np.fromiter(rowids, dtype=np.int64)))

    def search(
        self, query: npt.NDArray[np.float32], k: int, allowed: Collection[int] | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Top-``k`` (scores, ids) for one query, optionally restricted to ``allowed`` ids."""
        k = min(k, self.size)
        if k == 0 or (allowed is not None and not allowed):
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        params = None
        if allowed is not None:
            selector = faiss.IDSelectorBatch(np.fromiter(allowed, dtype=np.int64))
            params = faiss.SearchParameters()
            params.sel = selector
        scores, ids = self.index.search(query.reshape(1, -1).astype(np.float32), k, params=params)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    def similarity(
        self, query: npt.NDArray[np.float32], rowids: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        """Cosine similarity of the query to the stored vectors of ``rowids``."""
        if len(rowids) == 0:
            return np.zeros(0, dtype=np.float32)
        stored = self.index.reconstruct_batch(rowids)
        return np.asarray(stored @ query, dtype=np.float32)

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @staticmethod
    def load(path: Path) -> VectorIndex:
        return VectorIndex(faiss.read_index(str(path)))
