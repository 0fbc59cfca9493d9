"""The lexical side of the index: BM25 over term counts kept in segments, scored with
corpus-wide statistics.

A large immutable :class:`LexicalSegment` (term-major arrays, memory-mapped from disk)
plus a small append-only :class:`LexicalDelta` hold the documents. Scoring reads each
query term's postings from both, leaves out deleted documents, and computes BM25 from
the document count, average length and document frequencies of the *live* documents of
all segments together (as Lucene does across its segments), so a ranking does not change
when segments merge. Analysis (lower case, English stop words, Snowball stemming) is
bm25s's tokenizer; the scoring is Lucene's BM25, which bm25s computes the same way for
a single static index (``tests/index/test_lexical.py`` compares the two).
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np
import numpy.typing as npt
import Stemmer

BM25_K1 = 1.2
BM25_B = 0.75
MAX_TERM_COUNT = 255
"""A term's count in one document is capped here (segments keep it in a byte); BM25 has
long saturated by then (``tf / (tf + k1)`` is within 0.5% of 1), and a chunk of at most
a few hundred word pieces rarely repeats a term this often."""
_STEMMER = Stemmer.Stemmer("english")
_ARRAYS = ("rowids", "lengths", "indptr", "documents", "counts")


def tokenize(texts: Sequence[str], stopwords: str = "en") -> list[list[str]]:
    """Lower-case, drop English stop words and stem: the analysis used for BM25
    (``stopwords="en_plus"``: bm25s's longer list, question words included)."""
    tokens: list[list[str]] = bm25s.tokenize(
        list(texts), stopwords=stopwords, stemmer=_STEMMER, return_ids=False, show_progress=False
    )
    return tokens


@dataclass(frozen=True)
class Postings:
    """Where one term occurs: row ids of the documents, its count in each, their lengths."""

    rowids: npt.NDArray[np.int64]
    counts: npt.NDArray[np.float32]
    lengths: npt.NDArray[np.float32]


class LexicalSegment:
    """Immutable term counts of a set of documents (chunk row ids), stored term-major:
    the postings of term ``t`` are ``documents[indptr[t]:indptr[t + 1]]``."""

    def __init__(
        self,
        rowids: npt.NDArray[np.int64],
        lengths: npt.NDArray[np.int32],
        vocabulary: dict[str, int],
        indptr: npt.NDArray[np.int64],
        documents: npt.NDArray[np.int32],
        counts: npt.NDArray[np.uint8],
    ) -> None:
        self.rowids = rowids
        self.lengths = lengths
        self.vocabulary = vocabulary
        self.indptr = indptr
        self.documents = documents
        self.counts = counts

    @staticmethod
    def build(rowids: Sequence[int], texts: Sequence[str]) -> LexicalSegment:
        """A segment of the given documents (texts analysed here)."""
        return LexicalSegment.from_counts(rowids, [Counter(t) for t in tokenize(texts)])

    @staticmethod
    def from_counts(rowids: Sequence[int], term_counts: Sequence[Counter[str]]) -> LexicalSegment:
        """A segment of documents given as their term counts."""
        vocabulary: dict[str, int] = {}
        term_ids: list[int] = []
        document_ids: list[int] = []
        counts: list[int] = []
        for position, terms in enumerate(term_counts):
            for term, count in terms.items():
                term_ids.append(vocabulary.setdefault(term, len(vocabulary)))
                document_ids.append(position)
                counts.append(count)
        return LexicalSegment._term_major(
            np.asarray(rowids, dtype=np.int64),
            np.asarray([sum(t.values()) for t in term_counts], dtype=np.int32),
            vocabulary,
            np.asarray(term_ids, dtype=np.int64),
            np.asarray(document_ids, dtype=np.int32),
            np.asarray(counts, dtype=np.int32),
        )

    @staticmethod
    def _term_major(
        rowids: npt.NDArray[np.int64],
        lengths: npt.NDArray[np.int32],
        vocabulary: dict[str, int],
        term_ids: npt.NDArray[np.int64],
        document_ids: npt.NDArray[np.int32],
        counts: npt.NDArray[np.integer],
    ) -> LexicalSegment:
        order = np.lexsort((document_ids, term_ids))
        indptr = np.zeros(len(vocabulary) + 1, dtype=np.int64)
        np.cumsum(np.bincount(term_ids, minlength=len(vocabulary)), out=indptr[1:])
        # capped here for every segment (those written before the cap kept int32 counts)
        capped = np.minimum(counts[order], MAX_TERM_COUNT).astype(np.uint8)
        return LexicalSegment(rowids, lengths, vocabulary, indptr, document_ids[order], capped)

    @property
    def size(self) -> int:
        """Number of documents."""
        return len(self.rowids)

    def postings(self, term: str) -> Postings | None:
        """The term's postings, or ``None`` when no document holds it."""
        column = self.vocabulary.get(term)
        if column is None:
            return None
        first, last = int(self.indptr[column]), int(self.indptr[column + 1])
        positions = self.documents[first:last]
        return Postings(
            self.rowids[positions],
            self.counts[first:last].astype(np.float32),
            self.lengths[positions].astype(np.float32),
        )

    def scores(self, query: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """BM25 of this segment's documents holding a query term, as a corpus of its own:
        (row ids ascending, scores)."""
        lengths = np.asarray(self.lengths)
        statistics = CorpusStatistics(self.size, float(lengths.mean()) if self.size else 0.0)
        terms = [[p] if (p := self.postings(t)) is not None else [] for t in tokenize([query])[0]]
        return score_terms(terms, statistics)

    def merged(
        self, removed: npt.NDArray[np.int64], delta: LexicalDelta, delta_size: int
    ) -> LexicalSegment:
        """A new segment: this one without the documents ``removed`` (row ids), plus the
        first ``delta_size`` documents of ``delta`` (the deleted ones among them too
        should be listed in ``removed``). Nothing is analysed again."""
        term_of_entry = np.repeat(
            np.arange(len(self.vocabulary), dtype=np.int64), np.diff(self.indptr)
        )
        keep_document = ~np.isin(self.rowids, removed)
        new_position = np.cumsum(keep_document) - 1
        keep_entry = keep_document[self.documents]
        vocabulary = dict(self.vocabulary)
        term_ids = [term_of_entry[keep_entry]]
        document_ids = [new_position[self.documents[keep_entry]].astype(np.int32)]
        counts: list[npt.NDArray[np.integer]] = [self.counts[keep_entry]]
        kept = int(keep_document.sum())
        delta_rowids, delta_lengths, delta_keep = delta.documents(delta_size, removed)
        delta_position = np.cumsum(delta_keep) - 1 + kept
        for term, (positions, term_counts) in delta.postings_lists(delta_size).items():
            chosen = delta_keep[positions]
            if not chosen.any():
                continue
            column = vocabulary.setdefault(term, len(vocabulary))
            term_ids.append(np.full(int(chosen.sum()), column, dtype=np.int64))
            document_ids.append(delta_position[positions[chosen]].astype(np.int32))
            counts.append(term_counts[chosen])
        return LexicalSegment._term_major(
            np.concatenate([self.rowids[keep_document], delta_rowids[delta_keep]]),
            np.concatenate([self.lengths[keep_document], delta_lengths[delta_keep]]),
            vocabulary,
            np.concatenate(term_ids),
            np.concatenate(document_ids),
            np.concatenate(counts),
        )

    def save(self, directory: Path) -> None:
        """Write the arrays (``.npy``) and the vocabulary into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        for name in _ARRAYS:
            np.save(directory / f"{name}.npy", getattr(self, name))
        terms = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        (directory / "vocabulary.json").write_text(json.dumps(terms))
        (directory / "lexical.json").write_text(
            json.dumps({"k1": BM25_K1, "b": BM25_B, "stemmer": "english", "documents": self.size})
        )

    @staticmethod
    def load(directory: Path) -> LexicalSegment:
        """Read a segment written by :meth:`save` (arrays memory-mapped); a damaged file
        raises ``ValueError`` naming it."""
        arrays = {}
        for name in _ARRAYS:
            path = directory / f"{name}.npy"
            try:
                arrays[name] = np.load(path, mmap_mode="r")
            except Exception as error:
                raise ValueError(f"{path}: {error}") from None
        path = directory / "vocabulary.json"
        try:
            terms = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from None
        segment = LexicalSegment(vocabulary={t: i for i, t in enumerate(terms)}, **arrays)
        if len(segment.indptr) != len(terms) + 1 or segment.indptr[-1] != len(segment.documents):
            raise ValueError(f"{directory}: the BM25 arrays do not fit together")
        return segment

    @staticmethod
    def empty() -> LexicalSegment:
        return LexicalSegment.from_counts([], [])


class LexicalDelta:
    """Documents added since the last merge, append-only: a view sees the first ``n``
    documents, so appending never changes what an older view reads."""

    def __init__(self) -> None:
        self._rowids = np.zeros(0, dtype=np.int64)
        self._lengths = np.zeros(0, dtype=np.int32)
        self.size = 0
        self._postings: dict[str, tuple[list[int], list[int]]] = {}

    def append(self, rowids: Sequence[int], texts: Sequence[str]) -> None:
        """Analyse and add documents."""
        count = len(rowids)
        if self.size + count > len(self._rowids):  # grow into new arrays: older views
            capacity = max(2 * len(self._rowids), self.size + count, 64)  # keep the old
            self._rowids = np.resize(self._rowids[: self.size], capacity)
            self._lengths = np.resize(self._lengths[: self.size], capacity)
        for offset, tokens in enumerate(tokenize(texts)):
            position = self.size + offset
            for term, frequency in Counter(tokens).items():
                positions, counts = self._postings.setdefault(term, ([], []))
                positions.append(position)
                counts.append(min(frequency, MAX_TERM_COUNT))
            self._lengths[position] = len(tokens)
        self._rowids[self.size : self.size + count] = rowids
        self.size += count

    def rowids(self, size: int) -> npt.NDArray[np.int64]:
        """Row ids of the first ``size`` documents."""
        return self._rowids[:size]

    def postings(self, term: str, size: int) -> Postings | None:
        """The term's postings among the first ``size`` documents."""
        found = self._postings.get(term)
        if found is None:
            return None
        positions, counts = found
        visible = _visible(positions, size)
        if visible == 0:
            return None
        chosen = np.asarray(positions[:visible], dtype=np.int64)
        return Postings(
            self._rowids[chosen],
            np.asarray(counts[:visible], dtype=np.float32),
            self._lengths[chosen].astype(np.float32),
        )

    def lengths(self, size: int) -> npt.NDArray[np.int32]:
        """Lengths (terms) of the first ``size`` documents."""
        return self._lengths[:size]

    def documents(
        self, size: int, removed: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.bool_]]:
        """Row ids and lengths of the first ``size`` documents, and which are not removed."""
        rowids = self.rowids(size)
        return rowids, self.lengths(size), ~np.isin(rowids, removed)

    def postings_lists(
        self, size: int
    ) -> dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]]:
        """Every term's (positions, counts) among the first ``size`` documents."""
        lists = {}
        for term, (positions, counts) in self._postings.items():
            visible = _visible(positions, size)
            if visible:
                lists[term] = (
                    np.asarray(positions[:visible], dtype=np.int64),
                    np.asarray(counts[:visible], dtype=np.int32),
                )
        return lists


def _visible(positions: list[int], size: int) -> int:
    """How many of the ascending ``positions`` are below ``size``."""
    return bisect_left(positions, size)


@dataclass(frozen=True)
class CorpusStatistics:
    """The live documents of all segments: how many, and their average length."""

    documents: int
    average_length: float


def score_terms(
    terms: Sequence[Sequence[Postings]], statistics: CorpusStatistics
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """BM25 (Lucene's formula) of every document holding a query term.

    ``terms[i]`` lists the live postings of the ``i``-th query term in every segment; the
    document frequency is their total, so it counts live documents of the whole corpus.
    Returns row ids and scores (each document once, in row-id order)."""
    rowid_parts, score_parts = [], []
    n, average = statistics.documents, max(statistics.average_length, 1e-9)
    for per_segment in terms:
        frequency = sum(len(p.rowids) for p in per_segment)
        if frequency == 0:
            continue
        idf = math.log(1.0 + (n - frequency + 0.5) / (frequency + 0.5))
        for postings in per_segment:
            norm = BM25_K1 * (1.0 - BM25_B + BM25_B * postings.lengths / average)
            score_parts.append(idf * postings.counts / (postings.counts + norm))
            rowid_parts.append(postings.rowids)
    if not rowid_parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    rowids, inverse = np.unique(np.concatenate(rowid_parts), return_inverse=True)
    scores = np.bincount(inverse, weights=np.concatenate(score_parts), minlength=len(rowids))
    return rowids, scores.astype(np.float32)
