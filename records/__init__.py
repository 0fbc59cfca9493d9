"""The plain record types every layer shares: articles, chunks, spans, ids, filters.

The bottom layer: it imports nothing of ours, so the stores (``index/``) and the domain
(``rag/``) both build on it without leaning on each other.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

ARTICLE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Article:
    """One news article: metadata plus the body text that every offset refers to."""

    id: str
    title: str
    text: str
    url: str | None = None
    source: str | None = None
    published: str | None = None
    dateline: str | None = None
    content_hash: str = field(default="", compare=False)


def content_hash(title: str, text: str) -> str:
    """Hash identifying an article's content, insensitive to whitespace differences."""
    canonical = " ".join(title.split()) + "\n" + " ".join(text.split())
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Span:
    """A piece of an article's text with its character offsets."""

    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Chunk:
    """A retrieval unit: consecutive sentences of one article."""

    article_id: str
    ordinal: int
    start: int
    end: int
    text: str
    sentences: tuple[tuple[int, int], ...]
    """``(start, end)`` of each sentence, in article offsets, in order."""

    def sentence_spans(self) -> Iterator[Span]:
        """The chunk's sentences, with article offsets."""
        for start, end in self.sentences:
            yield Span(start, end, self.text[start - self.start : end - self.start])

    @property
    def passage_id(self) -> str:
        """Public identifier of the chunk, stable for a given article and chunking."""
        return f"{self.article_id}:{self.ordinal}"


@dataclass(frozen=True)
class ArticleFilter:
    """Restricts retrieval to some articles; ``None`` fields do not restrict."""

    source: str | None = None
    published_after: str | None = None
    published_before: str | None = None
    article_ids: tuple[str, ...] | None = None
    excluded_article_ids: tuple[str, ...] | None = None

    @property
    def is_empty(self) -> bool:
        return (
            self.source is None
            and self.published_after is None
            and self.published_before is None
            and self.article_ids is None
            and self.excluded_article_ids is None
        )
