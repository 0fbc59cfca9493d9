"""SQLite records, the store's single source of truth: articles (full text and metadata),
their chunks (offsets, sentence offsets, the chunk vector as float16, the sentence vectors
as int8 with a scale each), and the change log the search segments are derived from.

Every write is one transaction that takes the next change number (``seq``): chunks carry
the ``seq`` that added them and deleted chunks leave a row in ``deletions`` with the
``seq`` that removed them, so a reader can replay exactly the changes after the ones its
segments cover. A chunk's text is not stored twice: it is its article's text between its
offsets. The file runs in WAL mode, so readers never wait for the writer.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from index.filters import SQLITE, filter_condition
from records import Article, ArticleFilter, Chunk

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS articles (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    url TEXT,
    source TEXT,
    published TEXT,
    dateline TEXT,
    content_hash TEXT NOT NULL UNIQUE,
    added_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    article_id TEXT NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    sentences TEXT NOT NULL,
    vector BLOB NOT NULL,
    sentence_vectors BLOB NOT NULL,
    sentence_scales BLOB NOT NULL,
    seq INTEGER NOT NULL,
    UNIQUE (article_id, ordinal)
);
CREATE INDEX IF NOT EXISTS chunks_seq ON chunks(seq);
CREATE TABLE IF NOT EXISTS deletions (rowid INTEGER PRIMARY KEY, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS deletions_seq ON deletions(seq);
"""
PAGE_SIZE = 16_384
"""A chunk row (vector, sentence vectors, offsets) is about 2.8 KB: 4 KiB pages fit one
and leave a third empty; 16 KiB pages leave little."""
WAL_SIZE_LIMIT = 64 * 1024 * 1024
"""The write-ahead log is truncated back to this after a checkpoint."""
ARTICLE_COLUMNS = "a.id, a.title, a.text, a.url, a.source, a.published, a.dateline, a.content_hash"
"""An article's columns (of ``articles a``) in the order :func:`article_from_row` reads."""
_CHUNK_TEXT = 'substr(a.text, c.start + 1, c."end" - c.start)'
_CHUNK_COLUMNS = f'c.rowid, c.article_id, c.ordinal, c.start, c."end", {_CHUNK_TEXT}, c.sentences'
_FROM_CHUNKS = "FROM chunks c JOIN articles a ON a.id = c.article_id"


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as stored, with the row id that keys its vector and BM25 document."""

    rowid: int
    chunk: Chunk


@dataclass(frozen=True)
class Changes:
    """What the records hold after change ``seq`` beyond an earlier change: the chunks
    added (row ids ascending, their vectors and texts) and the row ids deleted."""

    seq: int
    added: list[int]
    vectors: npt.NDArray[np.float32]
    texts: list[str]
    deleted: npt.NDArray[np.int64]
    articles: int
    chunks: int


def quantise(vectors: npt.NDArray[np.float32]) -> tuple[bytes, bytes]:
    """Sentence vectors as int8 codes with one float32 scale per vector (``code * scale``
    restores each value to within half a step of 1/127 of the vector's largest)."""
    vectors = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), -1)
    scales = np.maximum(np.abs(vectors).max(axis=1, initial=0.0), 1e-12) / 127.0
    codes = np.rint(vectors / scales[:, None]).astype(np.int8)
    return codes.tobytes(), scales.astype("<f4").tobytes()


def dequantise(codes: bytes, scales: bytes, dimension: int) -> npt.NDArray[np.float32]:
    """The vectors :func:`quantise` encoded."""
    factors = np.frombuffer(scales, dtype="<f4")
    values = np.frombuffer(codes, dtype=np.int8).reshape(len(factors), dimension)
    restored: npt.NDArray[np.float32] = values.astype(np.float32) * factors[:, None]
    return restored


class RecordStore:
    """The records of one store in one SQLite file (WAL mode)."""

    def __init__(self, path: Path, *, read_only: bool) -> None:
        self.path = path
        uri = f"file:{path}?mode=ro" if read_only else f"file:{path}"
        self.connection = sqlite3.connect(
            uri, uri=True, check_same_thread=False, isolation_level=None, timeout=30
        )
        self.connection.execute("PRAGMA foreign_keys = ON")
        if not read_only:
            self.connection.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # new files only
            self.connection.execute("PRAGMA journal_mode = WAL")
            self.connection.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            self.connection.execute("PRAGMA synchronous = FULL")
            self.connection.executescript(_SCHEMA)

    def close(self) -> None:
        self.connection.close()

    # -- transactions -----------------------------------------------------------
    def begin_write(self) -> None:
        """Start the write transaction (waiting for any other writer)."""
        self.connection.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.connection.execute("COMMIT")

    def rollback(self) -> None:
        if self.connection.in_transaction:
            self.connection.execute("ROLLBACK")

    # -- meta -------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        """The store's metadata (format, model, counts, the last change number)."""
        return {k: json.loads(v) for k, v in self.connection.execute("SELECT key, value FROM meta")}

    def set_meta(self, values: dict[str, Any]) -> None:
        self.connection.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [(k, json.dumps(v)) for k, v in values.items()],
        )

    def seq(self) -> int:
        """The last committed change number (0 for a new store)."""
        row = self.connection.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
        return int(json.loads(row[0])) if row else 0

    # -- writes (inside a write transaction) --------------------------------------
    def insert_article(
        self,
        article: Article,
        chunks: Sequence[Chunk],
        vectors: npt.NDArray[np.float32],
        sentence_vectors: Sequence[npt.NDArray[np.float32]],
        seq: int,
    ) -> list[int]:
        """Store an article and its chunks (each with its vector and one vector per
        sentence) as part of change ``seq``; returns the chunks' row ids."""
        self.connection.execute(
            "INSERT INTO articles (id, title, text, url, source, published, dateline,"
            " content_hash, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                article.id,
                article.title,
                article.text,
                article.url,
                article.source,
                article.published,
                article.dateline,
                article.content_hash,
                seq,
            ),
        )
        rowids = []
        for chunk, vector, sentences in zip(chunks, vectors, sentence_vectors, strict=True):
            if len(sentences) != len(chunk.sentences):
                raise ValueError(f"{len(sentences)} vectors for {len(chunk.sentences)} sentences")
            if article.text[chunk.start : chunk.end] != chunk.text:
                raise ValueError(f"chunk {chunk.passage_id} is not its article's text")
            codes, scales = quantise(sentences)
            cursor = self.connection.execute(
                'INSERT INTO chunks (article_id, ordinal, start, "end", sentences, vector,'
                " sentence_vectors, sentence_scales, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    chunk.article_id,
                    chunk.ordinal,
                    chunk.start,
                    chunk.end,
                    json.dumps(chunk.sentences, separators=(",", ":")),
                    np.asarray(vector, dtype="<f2").tobytes(),
                    codes,
                    scales,
                    seq,
                ),
            )
            assert cursor.lastrowid is not None
            rowids.append(cursor.lastrowid)
        return rowids

    def delete_articles(self, article_ids: Collection[str], seq: int) -> list[int]:
        """Delete articles and their chunks as part of change ``seq``; returns the
        deleted chunks' row ids."""
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
        self.connection.executemany(
            "INSERT INTO deletions (rowid, seq) VALUES (?, ?)", [(r, seq) for r in rowids]
        )
        return rowids

    def forget_deletions(self, up_to_seq: int) -> None:
        """Drop the deletion log up to a change no segment in use predates."""
        self.connection.execute("DELETE FROM deletions WHERE seq <= ?", (up_to_seq,))

    # -- reads ------------------------------------------------------------------
    def changes_since(self, seq: int) -> Changes:
        """The chunks added and deleted after change ``seq``, up to the last commit, read
        in one transaction (a consistent cut)."""
        self.connection.execute("BEGIN")
        try:
            meta = self.meta()
            rows = self.connection.execute(
                f"SELECT c.rowid, c.vector, {_CHUNK_TEXT} {_FROM_CHUNKS}"
                " WHERE c.seq > ? ORDER BY +c.rowid",  # "+": by the seq index, then sort
                (seq,),
            ).fetchall()
            deleted = [
                row[0]
                for row in self.connection.execute(
                    "SELECT rowid FROM deletions WHERE seq > ?", (seq,)
                )
            ]
        finally:
            self.connection.execute("COMMIT")
        dimension = int(meta["dimension"])
        vectors = np.zeros((len(rows), dimension), dtype=np.float32)
        for position, row in enumerate(rows):
            vectors[position] = np.frombuffer(row[1], dtype="<f2")
        return Changes(
            seq=int(meta.get("seq", 0)),
            added=[row[0] for row in rows],
            vectors=vectors,
            texts=[row[2] for row in rows],
            deleted=np.asarray(deleted, dtype=np.int64),
            articles=int(meta.get("articles", 0)),
            chunks=int(meta.get("chunks", 0)),
        )

    def integrity_problems(self) -> list[str]:
        """SQLite's own consistency check of the file (empty when sound)."""
        rows = [row[0] for row in self.connection.execute("PRAGMA integrity_check")]
        return [] if rows == ["ok"] else [f"{self.path}: {row}" for row in rows]

    def mismatched_sentence_vectors(self, dimension: int) -> int:
        """How many chunks do not hold one ``dimension``-long vector per sentence."""
        row = self.connection.execute(
            "SELECT COUNT(*) FROM chunks WHERE length(vector) != 2 * ?"
            " OR length(sentence_vectors) != json_array_length(sentences) * ?"
            " OR length(sentence_scales) != json_array_length(sentences) * 4",
            (dimension, dimension),
        ).fetchone()
        return int(row[0])

    def count_articles(self) -> int:
        return int(self.connection.execute("SELECT COUNT(*) FROM articles").fetchone()[0])

    def count_chunks(self) -> int:
        return int(self.connection.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    def chunk_rowid_list(self) -> npt.NDArray[np.int64]:
        """Every chunk's row id, ascending."""
        rows = self.connection.execute("SELECT rowid FROM chunks ORDER BY rowid")
        return np.asarray([row[0] for row in rows], dtype=np.int64)

    def article(self, article_id: str) -> Article | None:
        """The article with this id, or ``None``."""
        rows = self._articles("WHERE a.id = ?", (article_id,))
        return rows[0][0] if rows else None

    def article_by_hash(self, digest: str) -> Article | None:
        """The article with this content hash, or ``None``."""
        rows = self._articles("WHERE a.content_hash = ?", (digest,))
        return rows[0][0] if rows else None

    def articles(self, *, offset: int = 0, limit: int = -1) -> list[tuple[Article, int]]:
        """Articles in the order they were added, each with its chunk count."""
        return self._articles("ORDER BY a.added_at, a.rowid LIMIT ? OFFSET ?", (limit, offset))

    def all_chunks(self) -> Iterable[StoredChunk]:
        """Every chunk, in row-id order."""
        for row in self.connection.execute(
            f"SELECT {_CHUNK_COLUMNS} {_FROM_CHUNKS} ORDER BY c.rowid"
        ):
            yield _stored_chunk(row)

    def chunks(self, rowids: Sequence[int]) -> dict[int, StoredChunk]:
        """The chunks with these row ids (those still stored), keyed by row id."""
        return {row[0]: _stored_chunk(row) for row in self._select_rows(_CHUNK_COLUMNS, rowids)}

    def sentence_vectors(self, rowids: Sequence[int]) -> dict[int, npt.NDArray[np.float32]]:
        """For each of these chunks, its sentence vectors (a row per sentence), by row id."""
        found = self._select_rows(
            "c.rowid, c.sentence_vectors, c.sentence_scales, length(c.vector) / 2", rowids
        )
        return {row[0]: dequantise(row[1], row[2], int(row[3])) for row in found}

    def _select_rows(self, columns: str, rowids: Sequence[int]) -> Iterable[tuple[Any, ...]]:
        for start in range(0, len(rowids), 500):
            batch = [int(r) for r in rowids[start : start + 500]]
            marks = ",".join("?" * len(batch))
            yield from self.connection.execute(
                f"SELECT {columns} {_FROM_CHUNKS} WHERE c.rowid IN ({marks})", batch
            )

    def chunk_rowids(self, where: ArticleFilter) -> set[int]:
        """Row ids of the chunks whose article passes the filter."""
        condition, params = filter_condition(where, SQLITE)
        sql = f"SELECT c.rowid {_FROM_CHUNKS}{condition}"
        return {row[0] for row in self.connection.execute(sql, params)}

    def _articles(self, tail: str, params: tuple[object, ...]) -> list[tuple[Article, int]]:
        sql = (
            f"SELECT {ARTICLE_COLUMNS},"
            " (SELECT COUNT(*) FROM chunks c WHERE c.article_id = a.id)"
            f" FROM articles a {tail}"
        )
        return [(article_from_row(row), row[8]) for row in self.connection.execute(sql, params)]


def article_from_row(row: Sequence[Any]) -> Article:
    """An article from the columns ``id, title, text, url, source, published, dateline,
    content_hash`` (the same in every format of the records)."""
    return Article(
        id=row[0],
        title=row[1],
        text=row[2],
        url=row[3],
        source=row[4],
        published=row[5],
        dateline=row[6],
        content_hash=row[7],
    )


def read_articles(path: Path) -> list[Article]:
    """Every article in a records file of this or an earlier format, in the order added
    (for rebuilding and upgrading); raises ``sqlite3.DatabaseError`` when unreadable."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = [row[0] for row in connection.execute("PRAGMA integrity_check")]
        if rows != ["ok"]:
            raise sqlite3.DatabaseError(f"{path}: {rows[0]}")
        found = connection.execute(
            f"SELECT {ARTICLE_COLUMNS} FROM articles a ORDER BY a.added_at, a.rowid"
        )
        return [article_from_row(row) for row in found]
    finally:
        connection.close()


def _stored_chunk(row: tuple[Any, ...]) -> StoredChunk:
    rowid, article_id, ordinal, start, end, text, sentences = row
    spans = tuple((int(a), int(b)) for a, b in json.loads(sentences))
    return StoredChunk(rowid, Chunk(article_id, ordinal, start, end, text, spans))
