"""SQLite records: the articles (full text and metadata), their chunks, and the chunks'
sentences (offsets, and vectors stored as float16)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rag.articles import Article
from rag.chunking import Chunk

_CHUNK_COLUMNS = 'rowid, article_id, ordinal, start, "end", text, sentences'

_SCHEMA = """
CREATE TABLE IF NOT EXISTS articles (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    url TEXT,
    source TEXT,
    published TEXT,
    dateline TEXT,
    content_hash TEXT NOT NULL UNIQUE,
    added_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY,
    article_id TEXT NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    text TEXT NOT NULL,
    sentences TEXT NOT NULL,
    sentence_vectors BLOB NOT NULL,
    UNIQUE (article_id, ordinal)
);
CREATE INDEX IF NOT EXISTS chunks_article ON chunks(article_id);
"""


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as stored, with the row id that keys its vector and BM25 document."""

    rowid: int
    chunk: Chunk


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


class RecordStore:
    """Articles and chunks in one SQLite file."""

    def __init__(self, path: Path, *, read_only: bool) -> None:
        self.path = path
        uri = f"file:{path}?mode=ro" if read_only else f"file:{path}"
        self.connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self.connection.execute("PRAGMA foreign_keys = ON")
        if not read_only:
            self.connection.executescript(_SCHEMA)

    def close(self) -> None:
        self.connection.close()

    def copy_to(self, path: Path) -> RecordStore:
        """Write a consistent copy of this database to ``path`` and open it for writing."""
        target = sqlite3.connect(path)
        with target:
            self.connection.backup(target)
        target.close()
        return RecordStore(path, read_only=False)

    def commit(self) -> None:
        self.connection.commit()

    # -- writes -----------------------------------------------------------------
    def insert_article(
        self,
        article: Article,
        chunks: Sequence[Chunk],
        sentence_vectors: Sequence[npt.NDArray[np.float32]],
    ) -> list[int]:
        """Store an article and its chunks, each with one vector per sentence; returns
        the chunks' new row ids."""
        self.connection.execute(
            "INSERT INTO articles (id, title, text, url, source, published, dateline, content_hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                article.id,
                article.title,
                article.text,
                article.url,
                article.source,
                article.published,
                article.dateline,
                article.content_hash,
            ),
        )
        rowids = []
        for chunk, vectors in zip(chunks, sentence_vectors, strict=True):
            if len(vectors) != len(chunk.sentences):
                raise ValueError(f"{len(vectors)} vectors for {len(chunk.sentences)} sentences")
            cursor = self.connection.execute(
                'INSERT INTO chunks (article_id, ordinal, start, "end", text, sentences,'
                " sentence_vectors) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    chunk.article_id,
                    chunk.ordinal,
                    chunk.start,
                    chunk.end,
                    chunk.text,
                    json.dumps(chunk.sentences, separators=(",", ":")),
                    np.asarray(vectors, dtype="<f2").tobytes(),
                ),
            )
            assert cursor.lastrowid is not None
            rowids.append(cursor.lastrowid)
        return rowids

    def delete_articles(self, article_ids: Collection[str]) -> list[int]:
        """Delete articles and their chunks; returns the deleted chunks' row ids."""
        rowids: list[int] = []
        for article_id in article_ids:
            rowids += [
                row[0]
                for row in self.connection.execute(
                    "SELECT rowid FROM chunks WHERE article_id = ?", (article_id,)
                )
            ]
            self.connection.execute("DELETE FROM chunks WHERE article_id = ?", (article_id,))
            self.connection.execute("DELETE FROM articles WHERE id = ?", (article_id,))
        return rowids

    # -- reads ------------------------------------------------------------------
    def integrity_problems(self) -> list[str]:
        """SQLite's own consistency check of the file (empty when sound)."""
        rows = [row[0] for row in self.connection.execute("PRAGMA integrity_check")]
        return [] if rows == ["ok"] else [f"{self.path}: {row}" for row in rows]

    def mismatched_sentence_vectors(self, dimension: int) -> int:
        """How many chunks do not hold one ``dimension``-long vector per sentence."""
        row = self.connection.execute(
            "SELECT COUNT(*) FROM chunks"
            " WHERE length(sentence_vectors) != json_array_length(sentences) * ?",
            (2 * dimension,),
        ).fetchone()
        return int(row[0])

    def count_articles(self) -> int:
        return int(self.connection.execute("SELECT COUNT(*) FROM articles").fetchone()[0])

    def count_chunks(self) -> int:
        return int(self.connection.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    def article(self, article_id: str) -> Article | None:
        """The article with this id, or ``None``."""
        rows = self._articles("WHERE id = ?", (article_id,))
        return rows[0][0] if rows else None

    def article_by_hash(self, digest: str) -> Article | None:
        """The article with this content hash, or ``None``."""
        rows = self._articles("WHERE content_hash = ?", (digest,))
        return rows[0][0] if rows else None

    def articles(self, *, offset: int = 0, limit: int = -1) -> list[tuple[Article, int]]:
        """Articles in the order they were added, each with its chunk count."""
        return self._articles("ORDER BY added_at, rowid LIMIT ? OFFSET ?", (limit, offset))

    def all_chunks(self) -> Iterable[StoredChunk]:
        """Every chunk, in row-id order."""
        for row in self.connection.execute(f"SELECT {_CHUNK_COLUMNS} FROM chunks ORDER BY rowid"):
            yield _stored_chunk(row)

    def chunks(self, rowids: Sequence[int]) -> dict[int, StoredChunk]:
        """The chunks with these row ids, keyed by row id."""
        return {row[0]: _stored_chunk(row) for row in self._select_rows(_CHUNK_COLUMNS, rowids)}

    def sentence_vectors(self, rowids: Sequence[int]) -> dict[int, npt.NDArray[np.float32]]:
        """For each of these chunks, its sentence vectors (a row per sentence), by row id."""
        return {
            row[0]: np.frombuffer(row[2], dtype="<f2")
            .reshape(len(json.loads(row[1])), -1)
            .astype(np.float32)
            for row in self._select_rows("rowid, sentences, sentence_vectors", rowids)
        }

    def _select_rows(self, columns: str, rowids: Sequence[int]) -> Iterable[tuple[Any, ...]]:
        for start in range(0, len(rowids), 500):
            batch = [int(r) for r in rowids[start : start + 500]]
            marks = ",".join("?" * len(batch))
            yield from self.connection.execute(
                f"SELECT {columns} FROM chunks WHERE rowid IN ({marks})", batch
            )

    def chunk_rowids(self, where: ArticleFilter) -> set[int]:
        """Row ids of the chunks whose article passes the filter."""
        clauses, params = [], []
        if where.source is not None:
            clauses.append("a.source = ?")
            params.append(where.source)
        if where.published_after is not None:
            clauses.append("a.published >= ?")
            params.append(where.published_after)
        if where.published_before is not None:
            clauses.append("a.published <= ?")
            params.append(where.published_before)
        if where.article_ids is not None:
            clauses.append(f"a.id IN ({','.join('?' * len(where.article_ids))})")
            params.extend(where.article_ids)
        if where.excluded_article_ids is not None:
            clauses.append(f"a.id NOT IN ({','.join('?' * len(where.excluded_article_ids))})")
            params.extend(where.excluded_article_ids)
        sql = "SELECT c.rowid FROM chunks c JOIN articles a ON a.id = c.article_id"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        return {row[0] for row in self.connection.execute(sql, params)}

    def _articles(self, tail: str, params: tuple[object, ...]) -> list[tuple[Article, int]]:
        sql = (
            "SELECT a.id, a.title, a.text, a.url, a.source, a.published, a.dateline,"
            " a.content_hash, (SELECT COUNT(*) FROM chunks c WHERE c.article_id = a.id)"
            f" FROM articles a {tail}"
        )
        return [
            (
                Article(
                    id=row[0],
                    title=row[1],
                    text=row[2],
                    url=row[3],
                    source=row[4],
                    published=row[5],
                    dateline=row[6],
                    content_hash=row[7],
                ),
                row[8],
            )
            for row in self.connection.execute(sql, params)
        ]


def _stored_chunk(row: tuple[Any, ...]) -> StoredChunk:
    rowid, article_id, ordinal, start, end, text, sentences = row
    spans = tuple((int(a), int(b)) for a, b in json.loads(sentences))
    return StoredChunk(rowid, Chunk(article_id, ordinal, start, end, text, spans))
