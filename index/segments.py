"""Derived search segments: an immutable on-disk base, an in-memory delta, and the view a
reader searches.

The records (SQLite) are the truth; these are derived from them. The :class:`BaseSegment`
holds the FAISS vectors and the BM25 term counts of every chunk up to one change number
(``seq``); the :class:`Delta` holds the chunks added after it, appended as the records'
tail is replayed; row ids deleted after the base are left out of every search. A
:class:`SegmentView` is one consistent cut (base, the first ``n`` delta rows, the deleted
set) that never changes under a reader. A merge folds the delta and the deletions into a
new base, after which searches return exactly what they returned before.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from index.lexical import CorpusStatistics, LexicalDelta, LexicalSegment, score_terms, tokenize
from index.vectors import VectorIndex

Vectors = npt.NDArray[np.float32]
RowIds = npt.NDArray[np.int64]
_POINTER = "CURRENT"
_SEGMENT_RECORD = "segment.json"


@dataclass(frozen=True)
class BaseSegment:
    """The immutable part of the search index: every chunk up to change ``seq``."""

    name: str
    seq: int
    vectors: VectorIndex
    lexical: LexicalSegment
    total_length: int
    """Sum of the documents' lengths in terms (for BM25's average length)."""

    @staticmethod
    def empty(dimension: int) -> BaseSegment:
        return BaseSegment("", 0, VectorIndex.empty(dimension), LexicalSegment.empty(), 0)

    @property
    def size(self) -> int:
        return self.lexical.size


class Delta:
    """Chunks added after the base, in arrival (row-id) order; append-only, so a view of
    the first ``n`` rows stays valid while more are appended."""

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self._vectors = np.zeros((0, dimension), dtype=np.float32)
        self.lexical = LexicalDelta()
        """The chunks' terms, and their row ids (row ``i`` of the vectors is document ``i``)."""

    @property
    def size(self) -> int:
        return self.lexical.size

    def append(self, rowids: Sequence[int], vectors: Vectors, texts: Sequence[str]) -> None:
        """Add chunks (row ids above every row id already here)."""
        size, count = self.size, len(rowids)
        if size + count > len(self._vectors):  # grow by doubling: a new array, so older
            capacity = max(2 * len(self._vectors), size + count, 64)  # views keep the old
            grown = np.zeros((capacity, self.dimension), dtype=np.float32)
            grown[:size] = self._vectors[:size]
            self._vectors = grown
        self._vectors[size : size + count] = vectors
        self.lexical.append(rowids, texts)

    def rows(self, size: int) -> tuple[Vectors, RowIds]:
        """The first ``size`` vectors and their row ids."""
        return self._vectors[:size], self.lexical.rowids(size)


@dataclass(frozen=True)
class SegmentView:
    """A consistent cut of the search index at change ``seq``: the base without the
    ``deleted`` row ids, plus the first ``delta_size`` delta rows without them."""

    seq: int
    base: BaseSegment
    delta: Delta
    delta_size: int
    deleted: RowIds
    """Sorted row ids deleted after the base (in the base or in the delta)."""
    statistics: CorpusStatistics
    total_length: int
    """Terms in the live documents (the statistics' average length times their number)."""
    delta_live: npt.NDArray[np.bool_]
    """Which of the first ``delta_size`` delta rows are not deleted."""
    _selector: Any

    @staticmethod
    def of(seq: int, base: BaseSegment, delta: Delta, deleted: RowIds) -> SegmentView:
        """The view of ``base`` + the delta as it is now - ``deleted``."""
        deleted = np.unique(deleted.astype(np.int64))
        size = delta.size
        base_gone = _positions_of(base.lexical.rowids, deleted)
        _, delta_lengths, delta_live = delta.lexical.documents(size, deleted)
        documents = base.size - len(base_gone) + int(delta_live.sum())
        length = (
            base.total_length
            - int(np.asarray(base.lexical.lengths)[base_gone].sum())
            + int(delta_lengths[delta_live].sum())
        )
        selector = _excluding(base, base_gone)
        return SegmentView._assemble(
            seq, base, delta, deleted, documents, length, delta_live, selector
        )

    def advanced(self, seq: int, deleted: RowIds) -> SegmentView:
        """This view once its delta has grown (rows appended since it was made) and the
        row ids ``deleted`` were deleted: what :meth:`of` gives, at the cost of the
        change rather than of the view (an add searches nothing; a delete copies the
        deletion set and rebuilds the base's exclusion list)."""
        fresh = np.unique(deleted.astype(np.int64))
        fresh = fresh[~_lookup(self.deleted, fresh)[1]]
        size = self.delta.size
        rowids, lengths = self.delta.lexical.rowids(size), self.delta.lexical.lengths(size)
        base_gone = _positions_of(self.base.lexical.rowids, fresh)
        delta_gone = _positions_of(rowids, fresh)  # delta row ids ascend
        live = np.concatenate([self.delta_live, np.ones(size - self.delta_size, dtype=np.bool_)])
        live[delta_gone] = False
        added = size - self.delta_size
        documents = self.size - len(base_gone) + added - len(delta_gone)
        length = (
            self.total_length
            - int(np.asarray(self.base.lexical.lengths)[base_gone].sum())
            + int(lengths[self.delta_size :].sum())
            - int(lengths[delta_gone].sum())
        )
        deleted, selector = self.deleted, self._selector
        if len(fresh):
            deleted = np.union1d(self.deleted, fresh)
            selector = _excluding(self.base, _positions_of(self.base.lexical.rowids, deleted))
        return SegmentView._assemble(
            seq, self.base, self.delta, deleted, documents, length, live, selector
        )

    @staticmethod
    def _assemble(
        seq: int,
        base: BaseSegment,
        delta: Delta,
        deleted: RowIds,
        documents: int,
        length: int,
        delta_live: npt.NDArray[np.bool_],
        selector: Any,
    ) -> SegmentView:
        """The view over all of ``delta`` as it is now, its BM25 statistics from the live
        documents' number and total length."""
        statistics = CorpusStatistics(documents, length / documents if documents else 0.0)
        return SegmentView(
            seq, base, delta, delta.size, deleted, statistics, length, delta_live, selector
        )

    @property
    def size(self) -> int:
        """Number of live chunks."""
        return self.statistics.documents

    def live_rowids(self) -> RowIds:
        """Every live chunk's row id, sorted."""
        _, delta_rowids = self.delta.rows(self.delta_size)
        every = np.concatenate([np.asarray(self.base.lexical.rowids), delta_rowids])
        return np.sort(every[~np.isin(every, self.deleted)])

    def dense_search(
        self, query: Vectors, k: int, allowed: Collection[int] | None = None
    ) -> tuple[Vectors, RowIds]:
        """Top-``k`` (cosine scores, row ids) over live chunks, within ``allowed``."""
        if allowed is not None:
            allowed = set(allowed).difference(self.deleted.tolist())
        excluded = None if self._selector is None else self._selector[0]
        base_scores, base_ids = self.base.vectors.search(query, k, allowed, excluded)
        vectors, rowids = self.delta.rows(self.delta_size)
        scores = vectors @ query.astype(np.float32)
        keep = self.delta_live.copy()
        if allowed is not None:
            keep &= np.isin(rowids, np.fromiter(allowed, dtype=np.int64))
        all_scores = np.concatenate([base_scores, scores[keep]])
        all_ids = np.concatenate([base_ids, rowids[keep]])
        order = np.argsort(-all_scores, kind="stable")[:k]
        return all_scores[order], all_ids[order]

    def similarity(self, query: Vectors, rowids: RowIds) -> Vectors:
        """Cosine similarity of the query to the vectors of these (live) chunks."""
        vectors, delta_rowids = self.delta.rows(self.delta_size)
        positions = np.searchsorted(delta_rowids, rowids)
        in_delta = positions < len(delta_rowids)
        in_delta[in_delta] = delta_rowids[positions[in_delta]] == rowids[in_delta]
        scores = np.zeros(len(rowids), dtype=np.float32)
        if in_delta.any():
            scores[in_delta] = vectors[positions[in_delta]] @ query.astype(np.float32)
        if (~in_delta).any():
            scores[~in_delta] = self.base.vectors.similarity(query, rowids[~in_delta])
        return scores

    def lexical_scores(
        self, query: str, allowed: Collection[int] | None = None
    ) -> tuple[RowIds, Vectors]:
        """BM25 of every live chunk holding a query term (row ids ascending, scores),
        with statistics over all live chunks; ``allowed`` restricts the row ids."""
        terms = []
        for term in tokenize([query])[0]:
            found = [
                self.base.lexical.postings(term),
                self.delta.lexical.postings(term, self.delta_size),
            ]
            live = []
            for postings in found:
                if postings is None:
                    continue
                keep = ~np.isin(postings.rowids, self.deleted)
                if not keep.all():
                    postings = type(postings)(
                        postings.rowids[keep], postings.counts[keep], postings.lengths[keep]
                    )
                live.append(postings)
            terms.append(live)
        rowids, scores = score_terms(terms, self.statistics)
        if allowed is not None and len(rowids):
            keep = np.isin(rowids, np.fromiter(allowed, dtype=np.int64))
            rowids, scores = rowids[keep], scores[keep]
        return rowids, scores

    def merged(self, name: str) -> BaseSegment:
        """A new base holding exactly this view's live chunks."""
        vectors = self.base.vectors.copy()
        base_rowids = np.asarray(self.base.lexical.rowids)
        vectors.remove(base_rowids[_positions_of(base_rowids, self.deleted)].tolist())
        delta_vectors, delta_rowids = self.delta.rows(self.delta_size)
        vectors.add(delta_vectors[self.delta_live], delta_rowids[self.delta_live])
        lexical = self.base.lexical.merged(self.deleted, self.delta.lexical, self.delta_size)
        return BaseSegment(
            name, self.seq, vectors.tuned(), lexical, int(np.asarray(lexical.lengths).sum())
        )


def _excluding(base: BaseSegment, base_gone: RowIds) -> Any:
    """The FAISS selector that keeps dense search off the base rows at ``base_gone``
    (positions in the base), with the inner selector it holds kept alive; ``None`` when
    no base row is gone."""
    if not len(base_gone):
        return None
    inner = faiss.IDSelectorBatch(np.asarray(base.lexical.rowids)[base_gone])
    return (faiss.IDSelectorNot(inner), inner)


def _lookup(sorted_rowids: Any, rowids: RowIds) -> tuple[RowIds, npt.NDArray[np.bool_]]:
    """For each of ``rowids``, a position in ``sorted_rowids`` and whether it is there."""
    haystack = np.asarray(sorted_rowids)
    if len(haystack) == 0 or len(rowids) == 0:
        return np.zeros(len(rowids), dtype=np.int64), np.zeros(len(rowids), dtype=np.bool_)
    positions = np.clip(np.searchsorted(haystack, rowids), 0, len(haystack) - 1)
    return positions.astype(np.int64), haystack[positions] == rowids


def _positions_of(sorted_rowids: Any, rowids: RowIds) -> RowIds:
    """Positions in ``sorted_rowids`` of those of ``rowids`` it holds."""
    positions, found = _lookup(sorted_rowids, rowids)
    return positions[found]


class SegmentDirectory:
    """The base segments of one store on disk: ``seg-<seq>/`` folders and a ``CURRENT``
    file naming the one in use, replaced atomically."""

    def __init__(self, directory: Path, dimension: int) -> None:
        self.directory = directory
        self.dimension = dimension

    def current_name(self) -> str | None:
        """The base segment in use, or ``None`` when none was written yet."""
        try:
            return (self.directory / _POINTER).read_text().strip() or None
        except FileNotFoundError:
            return None

    def load(self, name: str | None) -> BaseSegment:
        """Load a base segment (the empty base for ``None``); a missing or damaged file
        raises ``ValueError`` naming it."""
        if name is None:
            return BaseSegment.empty(self.dimension)
        path = self.directory / name
        record_path = path / _SEGMENT_RECORD
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"{record_path}: {error}") from None
        vectors_path = path / "vectors.faiss"
        if not vectors_path.is_file():
            raise ValueError(f"{vectors_path}: missing")
        try:
            vectors = VectorIndex.load(vectors_path)
        except Exception as error:  # FAISS raises RuntimeError with its own text
            raise ValueError(f"{vectors_path}: {error}") from None
        lexical = LexicalSegment.load(path / "lexical")
        if vectors.size != lexical.size or lexical.size != record["chunks"]:
            raise ValueError(
                f"{path}: {vectors.size} vectors and {lexical.size} BM25 documents for "
                f"{record['chunks']} chunks"
            )
        return BaseSegment(name, int(record["seq"]), vectors, lexical, int(record["length"]))

    def publish(self, view: SegmentView) -> BaseSegment:
        """Write the merge of ``view`` as a new base segment and make it current
        (atomically: a crash at any point leaves the previous one in use)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"seg-{view.seq:012d}-{uuid.uuid4().hex[:8]}"
        staging = self.directory / f".tmp-{name}"
        base = view.merged(name)
        try:
            staging.mkdir()
            base.vectors.save(staging / "vectors.faiss")
            base.lexical.save(staging / "lexical")
            record = {
                "seq": base.seq,
                "chunks": base.size,
                "length": base.total_length,
                "vector_index": base.vectors.description,
            }
            (staging / _SEGMENT_RECORD).write_text(json.dumps(record, indent=2))
            fsync_tree(staging)
            os.rename(staging, self.directory / name)
            pointer = self.directory / f".{_POINTER}-{uuid.uuid4().hex}"
            pointer.write_text(name)
            fsync_file(pointer)
            os.replace(pointer, self.directory / _POINTER)
            fsync_dir(self.directory)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return base

    def prune(self, keep: Collection[str]) -> None:
        """Remove base segments other than ``keep``, and leftovers of interrupted merges."""
        for path in self.directory.glob("*"):
            if path.name == _POINTER or path.name in keep:
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` to disk."""
    for path in [root, *root.rglob("*")]:
        if path.is_file():
            fsync_file(path)
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        fsync_dir(directory)
