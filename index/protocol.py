"""What the domain asks of a store: the ``Store`` protocol every store implements.

A store keeps articles, their chunks, chunk vectors and sentence vectors, and answers
dense and lexical searches over the chunks. Readers work on a :class:`StoreView`, a
consistent cut at one change number (``generation``); writers work inside one
:meth:`Store.writing` block, whose changes become visible together.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from index.records import StoredChunk
from records import Article, ArticleFilter, Chunk

Vectors = npt.NDArray[np.float32]
RowIds = npt.NDArray[np.int64]


class IndexStoreError(RuntimeError):
    """The index is missing, damaged, of another format, or built for another model."""


@dataclass(frozen=True)
class StoreIdentity:
    """What the vectors in a store mean: a store built for another model, dimension or
    vector space is refused rather than searched."""

    model_name: str
    dimension: int
    embed_backend: str
    vector_space: str
    """Which backends' vectors mix: ``float32`` vectors from any float backend, ``int8``
    vectors only with each other."""


@dataclass(frozen=True)
class NewArticle:
    """An article ready to store: its chunks, their vectors (one row per chunk) and, per
    chunk, the vectors of its sentences."""

    article: Article
    chunks: Sequence[Chunk]
    vectors: Vectors
    sentence_vectors: Sequence[Vectors]


class SearchView(Protocol):
    """Dense and lexical search over the chunks of one consistent view."""

    def dense_search(
        self, query: Vectors, k: int, allowed: Collection[int] | None = None
    ) -> tuple[Vectors, RowIds]:
        """Top-``k`` chunks by cosine similarity: (scores, row ids), best first."""
        ...

    def similarity(self, query: Vectors, rowids: RowIds) -> Vectors:
        """Cosine similarity of the query to these chunks' vectors."""
        ...

    def lexical_scores(
        self, query: str, allowed: Collection[int] | None = None
    ) -> tuple[RowIds, Vectors]:
        """BM25 of every chunk holding a query term: (row ids ascending, scores)."""
        ...


class StoreView(SearchView, Protocol):
    """A consistent read view of a store: search plus the records."""

    @property
    def generation(self) -> int:
        """The change number this view shows (grows with every committed write)."""
        ...

    @property
    def articles_count(self) -> int: ...

    @property
    def chunks_count(self) -> int: ...

    def chunks(self, rowids: Sequence[int]) -> dict[int, StoredChunk]: ...

    def all_chunks(self) -> Iterable[StoredChunk]:
        """Every chunk, in row-id order."""
        ...

    def sentence_vectors(self, rowids: Sequence[int]) -> dict[int, Vectors]: ...

    def chunk_rowids(self, where: ArticleFilter) -> set[int]: ...

    def article(self, article_id: str) -> Article | None: ...

    def articles(self, *, offset: int = 0, limit: int = -1) -> list[tuple[Article, int]]: ...

    def description(self) -> dict[str, Any]:
        """Provenance and counts, for ``/health`` and ``rag check``."""
        ...


class StoreWriter(Protocol):
    """Changes to a store, inside :meth:`Store.writing`."""

    def article(self, article_id: str) -> Article | None:
        """The stored article with this id (including ones added in this block)."""
        ...

    def article_by_hash(self, digest: str) -> Article | None: ...

    def add(self, items: Sequence[NewArticle]) -> None: ...

    def delete(self, article_ids: Collection[str]) -> int:
        """Delete articles; returns how many chunks went with them."""
        ...

    def commit(self) -> None:
        """Make the changes so far durable and visible (the block goes on writing)."""
        ...


class Store(Protocol):
    """Persistence for articles, chunks and vectors, searched through views."""

    def view(self) -> StoreView | None:
        """The newest consistent view, or ``None`` when no index exists yet."""
        ...

    def writing(self) -> AbstractContextManager[StoreWriter]:
        """One writer at a time (across threads and processes); a block that raises
        keeps nothing it did not commit."""
        ...

    def check(self) -> list[str]:
        """Consistency problems (empty when sound)."""
        ...

    def stored_articles(self) -> list[Article]:
        """Every stored article, for re-embedding them all."""
        ...

    def rebuilding(self) -> AbstractContextManager[StoreWriter]:
        """Write a complete new index that replaces this one when the block succeeds."""
        ...

    def merge(self, force: bool = False) -> bool:
        """Fold the changes since the last merge into the store's search structures, if
        due (or ``force``); ``False`` when there was nothing to do."""
        ...

    def close(self) -> None:
        """Finish background work and release connections."""
        ...
