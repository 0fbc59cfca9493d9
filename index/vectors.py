"""The dense side of the index: FAISS inner-product search over normalised vectors.

Exact search (``IndexIDMap2`` over ``IndexFlatIP``) up to :data:`IVF_MIN_VECTORS`;
above it an inverted file (inner product) with row ids stored in the lists and a
hash-table direct map, so that ids can still be removed (HNSW cannot) and vectors looked
up by id. The lists keep the vectors themselves (not residuals) as 8-bit codes, each
dimension scaled between its trained least and largest value (``SQ8``): a byte a value,
as the records' int8 chunk vectors, a quarter of float32 lists, and scores within about
0.001 of exact search's (the store re-scores its candidates with the records' vectors).
Segments written with float32 (``IVFFlat``) or float16 (``SQfp16``) lists are still
read, and re-clustered into 8-bit lists when next merged. What IVF gives up is mostly
the clusters it does not probe: ``nprobe`` is set for recall@10 >= 0.95 against exact
search (see ``bench/scale.py``). Files are memory-mapped when loaded.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

IVF_MIN_VECTORS = 50_000
"""Below this, exact search is fast enough (a few ms) and needs no training."""
IVF_LISTS_PER_SQRT = 2
"""``nlist = IVF_LISTS_PER_SQRT * sqrt(n)``: about 500 vectors per list at a million."""
IVF_SCAN_VECTORS = 8_000
IVF_MIN_NPROBE = 16
"""Each search probes enough lists to scan about :data:`IVF_SCAN_VECTORS` vectors, and at
least :data:`IVF_MIN_NPROBE` lists. At a million synthetic chunks (``bench/scale.py``)
that is 16 of 2,000 lists. 8 lists found 100% of the exact top 10 for queries cut from
indexed chunks but only 91% for queries that are not (drawn around, or cut from, news
articles outside the index), which is what questions are; 16 lists find 96% of those, in
about 3 ms instead of 1.3 ms. Smaller indexes have fewer, more mixed lists and need a
larger share of them (16 of 489 gave 96% at 60,000). The PostgreSQL store sizes its
IVFFlat index the same way (16 of 2,000 lists: 97-100% at a million, ``bench pgvector``)."""
IVF_TRAIN_PER_LIST = 40
"""Training sample per list (FAISS warns below 39)."""
IVF_RETRAIN_GROWTH = 4
"""Re-cluster when the index has grown this many times past the size it was trained at."""


class VectorIndex:
    """Chunk vectors keyed by their SQLite row id, exact or IVF depending on the size."""

    def __init__(self, index: faiss.Index) -> None:
        self.index: Any = index  # FAISS's stubs know only the base class

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

    @property
    def is_ivf(self) -> bool:
        return isinstance(self.index, faiss.IndexIVF)

    @property
    def trained_size(self) -> int:
        """Size the IVF clustering was made for (0 for exact search)."""
        return round((self.index.nlist / IVF_LISTS_PER_SQRT) ** 2) if self.is_ivf else 0

    @property
    def description(self) -> dict[str, Any]:
        """Type and parameters, for the manifest."""
        if not self.is_ivf:
            return {"type": "IDMap2,Flat", "metric": "inner_product", "exact": True}
        return {
            "type": _IVF_TYPES[_code_type(self.index.code_size, self.dimension)],
            "metric": "inner_product",
            "exact": False,
            "nlist": int(self.index.nlist),
            "nprobe": int(self.index.nprobe),
            "trained_size": self.trained_size,
            "ivf_min_vectors": IVF_MIN_VECTORS,
        }

    def copy(self) -> VectorIndex:
        """An independent, in-memory copy, to be changed without touching this one."""
        if not self.is_ivf:
            return VectorIndex(faiss.clone_index(self.index))
        if _code_type(self.index.code_size, self.dimension) != np.uint8:
            return self._rebuilt(_ivf(self._all()[0]))  # lists of an earlier kind
        return VectorIndex(_copy_ivf(self.index))

    def tuned(self) -> VectorIndex:
        """This index, or one of the type its size calls for: IVF from
        :data:`IVF_MIN_VECTORS` on (re-clustered after much growth), exact below half
        that (the gap keeps an index near the threshold from switching back and forth)."""
        size = self.size
        if self.is_ivf:
            if size < IVF_MIN_VECTORS // 2:
                return self._rebuilt(VectorIndex.empty(self.dimension))
            if ivf_due(size, self.trained_size):
                return self._rebuilt(_ivf(self._all()[0]))
            return self
        if size >= IVF_MIN_VECTORS:
            return self._rebuilt(_ivf(self._all()[0]))
        return self

    def _rebuilt(self, target: VectorIndex) -> VectorIndex:
        vectors, ids = self._all()
        target.add(vectors, ids)
        return target

    def _all(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Every stored vector and its id."""
        if not self.is_ivf:
            ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
            flat = faiss.downcast_index(self.index.index)
            return flat.reconstruct_n(0, self.size), ids
        lists = self.index.invlists
        parts, id_parts = [], []
        for number in range(lists.nlist):
            count = lists.list_size(number)
            if count:
                id_parts.append(faiss.rev_swig_ptr(lists.get_ids(number), count).copy())
                parts.append(_list_vectors(self.index, number))
        if not parts:
            return np.zeros((0, self.dimension), np.float32), np.zeros(0, np.int64)
        return np.concatenate(parts), np.concatenate(id_parts).astype(np.int64)

    def add(self, vectors: npt.NDArray[np.float32], rowids: npt.NDArray[np.int64]) -> None:
        """Add vectors under the given ids."""
        if len(rowids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), rowids)

    def remove(self, rowids: Collection[int]) -> None:
        """Remove the vectors with these ids."""
        if rowids:
            # IDSelectorArray: the only kind IVF's hash-table direct map can remove
            ids = np.fromiter(rowids, dtype=np.int64)
            self.index.remove_ids(faiss.IDSelectorArray(ids))

    def search(
        self,
        query: npt.NDArray[np.float32],
        k: int,
        allowed: Collection[int] | None = None,
        excluded: Any = None,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Top-``k`` (scores, ids) for one query, optionally restricted to ``allowed`` ids
        or, with a FAISS ``excluded`` selector, to the ids it selects."""
        k = min(k, self.size)
        if k == 0 or (allowed is not None and not allowed):
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        params: Any = None
        selector: Any = excluded
        if allowed is not None:
            selector = faiss.IDSelectorBatch(np.fromiter(allowed, dtype=np.int64))
        if selector is not None:
            params = faiss.SearchParametersIVF() if self.is_ivf else faiss.SearchParameters()
            params.sel = selector  # the local keeps the selector alive during the search
            if self.is_ivf:
                params.nprobe = self.index.nprobe
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
        """Read an index written by :meth:`save`, memory-mapped (pages load on use)."""
        return VectorIndex(
            faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        )


def _copy_ivf(source: Any) -> Any:
    """An in-memory copy of an IVF index with 8-bit lists: the same clusters, scalar
    quantiser, ids and codes (memory-mapped lists cannot be cloned: copied list by list)."""
    index = _empty_ivf(source.d, source.nlist)
    index.quantizer.add(source.quantizer.reconstruct_n(0, source.nlist))
    faiss.copy_array_to_vector(faiss.vector_to_array(source.sq.trained), index.sq.trained)
    index.is_trained = True  # the centroids and the value ranges are the source's
    lists = source.invlists
    for number in range(source.nlist):
        count = lists.list_size(number)
        if count:
            index.invlists.add_entries(
                number, count, lists.get_ids(number), lists.get_codes(number)
            )
    index.ntotal = source.ntotal
    index.nprobe = source.nprobe
    index.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
    return index


def _list_vectors(index: Any, number: int) -> npt.NDArray[np.float32]:
    """A copy of the vectors in one inverted list of ``index`` (8-bit, float16 or float32
    codes)."""
    lists = index.invlists
    count = lists.list_size(number)
    codes = faiss.rev_swig_ptr(lists.get_codes(number), count * lists.code_size)
    stored = _code_type(lists.code_size, index.d)
    if stored == np.uint8:
        return np.asarray(index.sq.decode(codes.reshape(count, -1)), dtype=np.float32)
    return codes.view(stored).reshape(count, index.d).astype(np.float32)


_IVF_TYPES: dict[type, str] = {
    np.uint8: "IVF,SQ8",
    np.float16: "IVF,SQfp16",
    np.float32: "IVF,Flat",
}


def _code_type(code_size: int, dimension: int) -> type:
    """What an IVF index's lists keep a value in, told by their code size: 8-bit codes
    (now), float16 or float32 (segments written before)."""
    return {dimension: np.uint8, 2 * dimension: np.float16}.get(code_size, np.float32)


def _empty_ivf(dimension: int, nlist: int) -> Any:
    """An untrained IVF index over inner product whose lists keep 8-bit vectors."""
    index: Any = faiss.index_factory(dimension, f"IVF{nlist},SQ8", faiss.METRIC_INNER_PRODUCT)
    index.by_residual = False  # the vectors themselves, each dimension in its trained range
    return index


def _ivf(sample_from: npt.NDArray[np.float32]) -> VectorIndex:
    """An empty, trained IVF index sized for ``len(sample_from)`` vectors."""
    size, dimension = sample_from.shape
    nlist = ivf_lists(size)
    training = min(size, nlist * IVF_TRAIN_PER_LIST)
    rows = np.random.default_rng(0).choice(size, training, replace=False)
    index = _empty_ivf(dimension, nlist)
    index.train(np.ascontiguousarray(sample_from[np.sort(rows)]))
    index.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
    index.nprobe = ivf_probes(nlist, size)
    return VectorIndex(index)


def ivf_lists(size: int) -> int:
    """How many lists an inverted file over ``size`` vectors is clustered into."""
    return max(1, int(IVF_LISTS_PER_SQRT * math.sqrt(size)))


def ivf_probes(lists: int, size: int) -> int:
    """How many of an inverted file's ``lists`` a search probes when it holds ``size``
    vectors (see :data:`IVF_MIN_NPROBE`)."""
    return min(lists, max(IVF_MIN_NPROBE, round(IVF_SCAN_VECTORS * lists / max(size, 1))))


def ivf_due(size: int, trained_size: int) -> bool:
    """Whether an inverted file trained at ``trained_size`` vectors (0: none yet) should
    be re-clustered now that it holds ``size``."""
    return size > IVF_RETRAIN_GROWTH * trained_size
