"""SQLite records, the store's single source of truth: articles (full text, compressed, and
metadata), their chunks (offsets, sentence offsets, the chunk vector as int8 codes with a
power-of-two scale, the sentence vectors as 4-bit codes with a scale each), and the change
log the search segments are derived from.

Every write is one transaction that takes the next change number (``seq``): chunks carry
the ``seq`` that added them and deleted chunks leave a row in ``deletions`` with the
``seq`` that removed them, so a reader can replay exactly the changes after the ones its
segments cover. A chunk's text is not stored twice: it is its article's text between its
offsets. The file runs in WAL mode, so readers never wait for the writer.
"""

from __future__ import annotations

import json
import sqlite3
import zlib
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
_LEAST_EXPONENT = -24
"""The smallest power-of-two scale of a chunk vector (float16's smallest step)."""
PAGE_SIZE = 16_384
"""A chunk row (vector, five sentence vectors, offsets) is about 1.45 KB: 4 KiB pages fit
two and leave a quarter empty; 16 KiB pages fit eleven and leave 2%."""
WAL_SIZE_LIMIT = 64 * 1024 * 1024
"""The write-ahead log is truncated back to this after a checkpoint."""
ARTICLE_COLUMNS = "a.id, a.title, a.text, a.url, a.source, a.published, a.dateline, a.content_hash"
"""An article's columns (of ``articles a``) in the order :func:`article_from_row` reads."""
_CHUNK_COLUMNS = 'c.rowid, c.article_id, c.ordinal, c.start, c."end", a.text, c.sentences'
"""A chunk's columns; its text is cut from its article's (:class:`_ChunkTexts`)."""
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
    """Sentence vectors as 4-bit codes, two to a byte, with one float32 scale per vector:
    value ``i`` is stored as the step ``k`` in -8..7 that holds it, ``scale = largest / 8``,
    and restored as the step's middle, ``(k + 0.5) * scale``. For unit vectors a dot
    product with a unit query moves by about 0.006 (measured on news sentence vectors)."""
    vectors = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), -1)
    scales = np.maximum(np.abs(vectors).max(axis=1, initial=0.0), 1e-12) / 8.0
    steps = np.clip(np.floor(vectors / scales[:, None]), -8, 7).astype(np.uint8) + 8
    if steps.shape[1] % 2:
        steps = np.pad(steps, ((0, 0), (0, 1)))
    packed = steps[:, 0::2] | (steps[:, 1::2] << 4)
    return packed.tobytes(), scales.astype("<f4").tobytes()


def dequantise(codes: bytes, scales: bytes, dimension: int) -> npt.NDArray[np.float32]:
    """The vectors :func:`quantise` encoded, or int8 codes (one byte a value, restored
    as ``code * scale``) written before 4-bit ones: the codes' length tells which (for
    any dimension above 1)."""
    factors = np.frombuffer(scales, dtype="<f4")
    count = len(factors)
    raw = np.frombuffer(codes, dtype=np.uint8)
    if len(raw) == count * dimension:
        values = raw.view(np.int8).reshape(count, dimension).astype(np.float32)
        int8_restored: npt.NDArray[np.float32] = values * factors[:, None]
        return int8_restored
    packed = raw.reshape(count, -1)
    steps = np.empty((count, 2 * packed.shape[1]), dtype=np.float32)
    steps[:, 0::2] = packed & 0x0F
    steps[:, 1::2] = packed >> 4
    restored: npt.NDArray[np.float32] = (steps[:, :dimension] - 7.5) * factors[:, None]
    return restored


def chunk_vector_codes(
    vectors: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int8]]:
    """Chunk vectors (a row each) as the stores keep them: int8 codes and a power-of-two
    scale ``2 ** exponent`` per vector, the smallest that holds its largest value in 127
    steps. Each value ``code * 2 ** exponent`` is then exact in float16 too (7 significant
    bits), so the PostgreSQL store's ``halfvec`` holds the very same vectors; a dot
    product with a unit query moves by about 0.001."""
    vectors = np.asarray(vectors, dtype=np.float32)
    largest = np.maximum(np.abs(vectors).max(axis=1, initial=0.0), 127 * 2.0**_LEAST_EXPONENT)
    exponents = np.ceil(np.log2(largest / 127)).astype(np.int32)
    steps = np.rint(np.ldexp(vectors, -exponents[:, None]))
    return np.clip(steps, -127, 127).astype(np.int8), exponents.astype(np.int8)


def rounded_chunk_vectors(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The values :func:`chunk_vector_codes` keeps of each vector."""
    codes, exponents = chunk_vector_codes(vectors)
    rounded: npt.NDArray[np.float32] = np.ldexp(
        codes.astype(np.float32), exponents.astype(np.int32)[:, None]
    )
    return rounded


def encode_chunk_vectors(vectors: npt.NDArray[np.float32]) -> list[bytes]:
    """Each chunk vector's codes followed by its scale's exponent (one signed byte)."""
    codes, exponents = chunk_vector_codes(vectors)
    return [row.tobytes() for row in np.concatenate([codes, exponents[:, None]], axis=1)]


def decode_chunk_vectors(stored: Sequence[bytes], dimension: int) -> npt.NDArray[np.float32]:
    """The vectors :func:`encode_chunk_vectors` encoded, a row each; rows of records written
    before it hold float16 vectors (``2 * dimension`` bytes)."""
    width = dimension + 1
    if all(len(blob) == width for blob in stored):
        raw = np.frombuffer(b"".join(stored), dtype=np.int8).reshape(len(stored), width)
        restored: npt.NDArray[np.float32] = np.ldexp(
            raw[:, :dimension].astype(np.float32), raw[:, dimension:].astype(np.int32)
        )
        return restored
    return np.stack(
        [
            decode_chunk_vectors([blob], dimension)[0]
            if len(blob) == width
            else np.frombuffer(blob, dtype="<f2").astype(np.float32)
            for blob in stored
        ]
    )


def code_lengths(dimension: int) -> tuple[int, int]:
    """Bytes a sentence vector's codes take: 4-bit (now) and int8 (earlier stores)."""
    return (dimension + 1) // 2, dimension


class RecordStore:
    """The records of one store in one SQLite file (WAL mode)."""

    def __init__(self, path: Path, *, read_only: bool) -> None:
        self.path = path
        self._dimension: int | None = None
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

    def dimension(self) -> int:
        """The vectors' dimension (fixed for the life of a records file)."""
        if self._dimension is None:
            self._dimension = int(self.meta()["dimension"])
        return self._dimension

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
                stored_text(article.text),
                article.url,
                article.source,
                article.published,
                article.dateline,
                article.content_hash,
                seq,
            ),
        )
        rowids = []
        encoded = encode_chunk_vectors(vectors)
        for chunk, vector, sentences in zip(chunks, encoded, sentence_vectors, strict=True):
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
                    vector,
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
            texts = _ChunkTexts()
            rows = [
                (rowid, vector, texts.cut(article_id, text, start, end))
                for rowid, vector, article_id, text, start, end in self.connection.execute(
                    # "+c.rowid": found by the seq index, then sorted
                    f'SELECT c.rowid, c.vector, c.article_id, a.text, c.start, c."end"'
                    f" {_FROM_CHUNKS} WHERE c.seq > ? ORDER BY +c.rowid",
                    (seq,),
                )
            ]
            deleted = [
                row[0]
                for row in self.connection.execute(
                    "SELECT rowid FROM deletions WHERE seq > ?", (seq,)
                )
            ]
        finally:
            self.connection.execute("COMMIT")
        vectors = decode_chunk_vectors([row[1] for row in rows], int(meta["dimension"]))
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
        """How many chunks do not hold a ``dimension``-long vector, and one per sentence."""
        row = self.connection.execute(
            "SELECT COUNT(*) FROM chunks WHERE length(vector) NOT IN (? + 1, 2 * ?)"
            " OR length(sentence_vectors) NOT IN"
            " (json_array_length(sentences) * ?, json_array_length(sentences) * ?)"
            " OR length(sentence_scales) != json_array_length(sentences) * 4",
            (dimension, dimension, *code_lengths(dimension)),
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
        texts = _ChunkTexts()
        for row in self.connection.execute(
            f"SELECT {_CHUNK_COLUMNS} {_FROM_CHUNKS} ORDER BY c.rowid"
        ):
            yield texts.stored_chunk(row)

    def chunks(self, rowids: Sequence[int]) -> dict[int, StoredChunk]:
        """The chunks with these row ids (those still stored), keyed by row id."""
        texts = _ChunkTexts()
        rows = self._select_rows(_CHUNK_COLUMNS, rowids)
        return {row[0]: texts.stored_chunk(row) for row in rows}

    def chunk_vectors(self, rowids: Sequence[int]) -> dict[int, npt.NDArray[np.float32]]:
        """The vectors of these chunks (those still stored), by row id."""
        rows = list(self._select_rows("c.rowid, c.vector", rowids, "FROM chunks c"))
        vectors = decode_chunk_vectors([row[1] for row in rows], self.dimension())
        return {row[0]: vector for row, vector in zip(rows, vectors, strict=True)}

    def sentence_vectors(self, rowids: Sequence[int]) -> dict[int, npt.NDArray[np.float32]]:
        """For each of these chunks, its sentence vectors (a row per sentence), by row id."""
        dimension = self.dimension()
        columns = "c.rowid, c.sentence_vectors, c.sentence_scales"
        found = self._select_rows(columns, rowids, "FROM chunks c")
        return {row[0]: dequantise(row[1], row[2], dimension) for row in found}

    def _select_rows(
        self, columns: str, rowids: Sequence[int], source: str = _FROM_CHUNKS
    ) -> Iterable[tuple[Any, ...]]:
        """``columns`` of these chunks' rows (``c``; ``a``, their articles, unless
        ``source`` leaves them out), 500 row ids a query."""
        for start in range(0, len(rowids), 500):
            batch = [int(r) for r in rowids[start : start + 500]]
            marks = ",".join("?" * len(batch))
            yield from self.connection.execute(
                f"SELECT {columns} {source} WHERE c.rowid IN ({marks})", batch
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
        text=article_text(row[2]),
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


def stored_text(text: str) -> str | bytes:
    """An article's text as the records keep it: zlib-compressed UTF-8 (about half the
    bytes of news text), or the text itself where that is no larger."""
    encoded = text.encode("utf-8")
    packed = zlib.compress(encoded)
    return packed if len(packed) < len(encoded) else text


def article_text(stored: str | bytes) -> str:
    """The text :func:`stored_text` kept (records written before compression hold text)."""
    return stored if isinstance(stored, str) else zlib.decompress(stored).decode("utf-8")


class _ChunkTexts:
    """Cuts chunks' texts from their articles' stored texts, decoding each article once
    while its chunks come in a row (as they do in row-id order)."""

    def __init__(self) -> None:
        self._article_id: str | None = None
        self._text = ""

    def cut(self, article_id: str, stored: str | bytes, start: int, end: int) -> str:
        if article_id != self._article_id:
            self._article_id, self._text = article_id, article_text(stored)
        return self._text[start:end]

    def stored_chunk(self, row: tuple[Any, ...]) -> StoredChunk:
        """A chunk from the columns of ``_CHUNK_COLUMNS``."""
        rowid, article_id, ordinal, start, end, stored, sentences = row
        spans = tuple((int(a), int(b)) for a, b in json.loads(sentences))
        text = self.cut(article_id, stored, start, end)
        return StoredChunk(rowid, Chunk(article_id, ordinal, start, end, text, spans))
