"""The PostgreSQL store: articles, chunks, vectors and BM25 statistics in one database,
searched in SQL (pgvector's IVFFlat for dense search, BM25 over a postings table for
lexical).

Processes hold no index state of their own: any number of them, on any machines, share
one database, and a write committed by one is in the next view of every other. A view
is a generation number and the counts read with it; each search it runs is one SQL
statement, so it sees one consistent state of the corpus (statistics included). Chunk
row ids are never reused, so a view taken before a delete at worst misses the chunks
deleted since.

Writers are serialised across processes by an advisory lock held for a ``writing()``
block; each :meth:`PostgresWriter.commit` and the end of the block commit one
transaction (the generation goes up by one), and an exception rolls back what was not
committed. A rebuild is one transaction: readers go on seeing the old corpus until it
commits. Connection failures, timeouts and an unreachable server are raised as
:class:`IndexStoreError` naming the server (never its password).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from index.filters import POSTGRES, filter_condition
from index.lexical import BM25_B, BM25_K1, MAX_TERM_COUNT, tokenize
from index.postgres.schema import (
    SCHEMA_VERSION,
    Connection,
    embedding_dimension,
    migrate,
    set_embedding_dimension,
)
from index.postgres.vector_index import IVF_LISTS, build_due, build_if_due, stop_builds
from index.protocol import IndexStoreError, NewArticle, RowIds, StoreIdentity, Vectors
from index.records import (
    ARTICLE_COLUMNS,
    StoredChunk,
    article_from_row,
    code_lengths,
    dequantise,
    quantise,
    rounded_chunk_vectors,
)
from index.vectors import ivf_probes
from records import Article, ArticleFilter, Chunk

log = logging.getLogger(__name__)
WRITE_LOCK = 0x6E6577737161_0002
"""Advisory lock key held by the one writer of a database."""
EXACT_SEARCH_BELOW = 10_000
"""Up to this many chunks (or allowed chunks), dense search is exact: a scan of every
vector takes a few milliseconds, and results equal the embedded store's. Above it the
IVFFlat index is used once built (:mod:`index.postgres.vector_index`)."""
CONNECT_TIMEOUT_S = 5.0
_CHUNK_COLUMNS = (
    "c.rowid, c.article_id, c.ordinal, c.start_offset, c.end_offset,"
    " substr(a.text, c.start_offset + 1, c.end_offset - c.start_offset), c.sentences"
)
_FROM_CHUNKS = "FROM chunks c JOIN articles a ON a.id = c.article_id"
_BM25 = """
WITH query AS MATERIALIZED (
    SELECT q.position, t.id,
           ln(1 + (m.chunks::float8 - t.df::float8 + 0.5) / (t.df::float8 + 0.5))::float4 AS idf,
           greatest(CASE WHEN m.chunks > 0 THEN m.total_length::float8 / m.chunks::float8
                         ELSE 0 END, 1e-9::float8)::float4 AS average
    FROM unnest(%(tokens)s::text[]) WITH ORDINALITY AS q(term, position)
    JOIN terms t ON t.term = q.term AND t.df > 0
    CROSS JOIN meta m
)
SELECT p.rowid,
       sum(((query.idf * p.tf::float4)
            / (p.tf::float4 + %(k1)s::float4 * ((1 - %(b)s)::float4
               + %(b)s::float4 * p.length::float4 / query.average)))::float8
           ORDER BY query.position)::float4
FROM query
CROSS JOIN LATERAL (
    SELECT rowid, tf, length FROM postings WHERE term_id = query.id OFFSET 0
) p
GROUP BY p.rowid
ORDER BY p.rowid
"""
"""Lucene's BM25 of every chunk holding a query term, as :func:`index.lexical.score_terms`
computes it: each query token (a repeated one counts again) reads its term's postings
(an index-only scan of ``postings``) and adds ``idf * tf / (tf + k1 * (1 - b + b *
length / average))``, with the document count, average length and document frequency
over the whole stored corpus; each addend is computed in float32 steps and they are
summed in float64 in query order, as numpy does there, so both stores give the same
scores to the bit."""


@dataclass(frozen=True)
class _Database:
    """One server (primary or replica): its pool, and how to name it in messages."""

    pool: ConnectionPool[Connection]
    where: str


class PostgresView:
    """The store at one generation: the counts and the vector index's list count read
    then, and searches over the newest committed state."""

    def __init__(
        self,
        store: PostgresStore,
        generation: int,
        counts: tuple[int, int],
        vector_lists: int | None,
    ) -> None:
        self.store = store
        self._generation = generation
        self._counts = counts
        self.vector_lists = vector_lists
        """The lists of the IVFFlat index searches use (``None``: none built yet)."""

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def vector_probes(self) -> int:
        """Lists an indexed search probes (0: no IVFFlat index yet)."""
        return ivf_probes(self.vector_lists, self.chunks_count) if self.vector_lists else 0

    @property
    def articles_count(self) -> int:
        return self._counts[0]

    @property
    def chunks_count(self) -> int:
        return self._counts[1]

    # -- search -------------------------------------------------------------------
    def dense_search(
        self, query: Vectors, k: int, allowed: Collection[int] | None = None
    ) -> tuple[Vectors, RowIds]:
        """Top-``k`` chunks by inner product (cosine: the vectors are normalised), scored
        with the float32 query against the stored float16 vectors: exact over small sets
        (and until the vector index is built), else by the IVFFlat index (a filter
        probes further lists until ``k`` pass)."""
        if k <= 0 or (allowed is not None and not allowed):
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        params: dict[str, Any] = {"query": _vector_text(query), "k": int(k)}
        where = ""
        if allowed is not None:
            params["allowed"] = [int(r) for r in allowed]
            where = "WHERE rowid = ANY(%(allowed)s::bigint[])"
        scored = "-(embedding::vector <#> %(query)s::vector)::float4"
        exact = (len(allowed) if allowed is not None else self.chunks_count) <= (
            self.store.exact_search_below
        )
        with self.store.reading() as connection:
            if exact:
                rows = connection.execute(
                    f"SELECT rowid, {scored} AS score FROM chunks {where}"
                    " ORDER BY score DESC, rowid LIMIT %(k)s",
                    params,
                ).fetchall()
            else:
                with connection.transaction():
                    if self.vector_probes:
                        probes = f"SET LOCAL ivfflat.probes = {self.vector_probes}"
                        connection.execute(probes.encode())
                    rows = connection.execute(
                        f"SELECT rowid, {scored} FROM chunks {where}"
                        " ORDER BY embedding <#> %(query)s::halfvec LIMIT %(k)s",
                        params,
                    ).fetchall()
        ids = np.asarray([r[0] for r in rows], dtype=np.int64)
        scores = np.asarray([r[1] for r in rows], dtype=np.float32)
        order = np.argsort(-scores, kind="stable")
        return scores[order], ids[order]

    def similarity(self, query: Vectors, rowids: RowIds) -> Vectors:
        """Cosine similarity of the query to these chunks' vectors (0 for a chunk no
        longer stored)."""
        scores = np.zeros(len(rowids), dtype=np.float32)
        if not len(rowids):
            return scores
        with self.store.reading() as connection:
            rows = connection.execute(
                "SELECT rowid, -(embedding::vector <#> %s::vector)::float4 FROM chunks"
                " WHERE rowid = ANY(%s::bigint[])",
                (_vector_text(query), [int(r) for r in rowids]),
            ).fetchall()
        found = {int(r[0]): float(r[1]) for r in rows}
        for position, rowid in enumerate(rowids.tolist()):
            scores[position] = found.get(rowid, 0.0)
        return scores

    def lexical_scores(
        self, query: str, allowed: Collection[int] | None = None
    ) -> tuple[RowIds, Vectors]:
        """BM25 of every chunk holding a query term (row ids ascending, scores), with
        statistics over all stored chunks; ``allowed`` restricts the row ids."""
        tokens = tokenize([query])[0]
        if not tokens:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        with self.store.reading() as connection:
            rows = connection.execute(
                _BM25,
                {"tokens": tokens, "k1": BM25_K1, "b": BM25_B},
            ).fetchall()
        rowids = np.asarray([r[0] for r in rows], dtype=np.int64)
        scores = np.asarray([r[1] for r in rows], dtype=np.float32)
        if allowed is not None and len(rowids):
            keep = np.isin(rowids, np.fromiter(allowed, dtype=np.int64))
            rowids, scores = rowids[keep], scores[keep]
        return rowids, scores

    # -- records ------------------------------------------------------------------
    def chunks(self, rowids: Sequence[int]) -> dict[int, StoredChunk]:
        if not rowids:
            return {}
        with self.store.reading() as connection:
            rows = connection.execute(
                f"SELECT {_CHUNK_COLUMNS} {_FROM_CHUNKS} WHERE c.rowid = ANY(%s::bigint[])",
                ([int(r) for r in rowids],),
            ).fetchall()
        return {int(row[0]): _stored_chunk(row) for row in rows}

    def all_chunks(self) -> Iterable[StoredChunk]:
        """Every chunk, in row-id order (read through a server-side cursor)."""
        with (
            self.store.reading() as connection,
            connection.transaction(),
            connection.cursor(name="all_chunks") as cursor,
        ):
            cursor.execute(f"SELECT {_CHUNK_COLUMNS} {_FROM_CHUNKS} ORDER BY c.rowid")
            for row in cursor:
                yield _stored_chunk(row)

    def sentence_vectors(self, rowids: Sequence[int]) -> dict[int, Vectors]:
        if not rowids:
            return {}
        with self.store.reading() as connection:
            rows = connection.execute(
                "SELECT rowid, sentence_codes, sentence_scales FROM chunks"
                " WHERE rowid = ANY(%s::bigint[])",
                ([int(r) for r in rowids],),
            ).fetchall()
        dimension = self.store.identity.dimension
        return {int(r[0]): dequantise(bytes(r[1]), bytes(r[2]), dimension) for r in rows}

    def chunk_rowids(self, where: ArticleFilter) -> set[int]:
        """Row ids of the chunks whose article passes the filter."""
        condition, params = filter_condition(where, POSTGRES)
        sql = f"SELECT c.rowid {_FROM_CHUNKS}{condition}"
        with self.store.reading() as connection:
            return {int(row[0]) for row in connection.execute(sql.encode(), params)}

    def article(self, article_id: str) -> Article | None:
        with self.store.reading() as connection:
            return _article(connection, "a.id = %s", article_id)

    def articles(self, *, offset: int = 0, limit: int = -1) -> list[tuple[Article, int]]:
        """Articles in the order they were added, each with its chunk count."""
        with self.store.reading() as connection:
            rows = connection.execute(
                f"SELECT {ARTICLE_COLUMNS},"
                " (SELECT count(*) FROM chunks c WHERE c.article_id = a.id)"
                " FROM articles a ORDER BY a.position LIMIT %s OFFSET %s",
                (None if limit < 0 else limit, max(offset, 0)),
            ).fetchall()
        return [(article_from_row(row), int(row[8])) for row in rows]

    def description(self) -> dict[str, Any]:
        store = self.store
        indexed = bool(self.vector_lists) and self.chunks_count > store.exact_search_below
        return {
            "store": "postgres",
            "format_version": SCHEMA_VERSION,
            "database": store.primary_where,
            "read_database": store.read_where,
            "generation": self.generation,
            "articles": self.articles_count,
            "chunks": self.chunks_count,
            "vector_index": {
                "type": "ivfflat" if indexed else "exact",
                "column": f"halfvec({store.identity.dimension})",
                "metric": "inner_product",
                "lists": self.vector_lists or 0,
                "probes": self.vector_probes if indexed else 0,
                "exact_below": store.exact_search_below,
            },
            "lexical": {"method": "bm25", "k1": BM25_K1, "b": BM25_B, "index": "postings"},
        }


class PostgresWriter:
    """Changes inside one transaction of the writer's connection, committed by
    :meth:`commit` (a rebuild's only at the end of its block)."""

    def __init__(self, store: PostgresStore, connection: Connection, *, rebuild: bool) -> None:
        self.store = store
        self.connection = connection
        self.rebuild = rebuild
        self._articles = 0
        self._chunks = 0
        self._length = 0
        self._dirty = rebuild
        with store.translated(store.primary_where):
            if rebuild:
                if embedding_dimension(connection) != store.identity.dimension:
                    stop_builds(connection)  # the column's type changes: see stop_builds
                for table in ("postings", "chunks", "articles", "terms"):
                    connection.execute(f"DELETE FROM {table}".encode())
                set_embedding_dimension(connection, store.identity.dimension)
            else:
                row = connection.execute(
                    "SELECT model_name, dimension, embed_backend, vector_space FROM meta"
                ).fetchone()
                if row is not None:
                    store.check_identity(row)
                elif embedding_dimension(connection) != store.identity.dimension:
                    set_embedding_dimension(connection, store.identity.dimension)

    def article(self, article_id: str) -> Article | None:
        with self.store.translated(self.store.primary_where):
            return _article(self.connection, "a.id = %s", article_id)

    def article_by_hash(self, digest: str) -> Article | None:
        with self.store.translated(self.store.primary_where):
            return _article(self.connection, "a.content_hash = %s", digest)

    def add(self, items: Sequence[NewArticle]) -> None:
        """Store articles with their chunks; one whose content is already stored (by
        another process too) is skipped: the unique content hash keeps the first."""
        for item in items:
            _check_item(item)
        with self.store.translated(self.store.primary_where):
            inserted = self._insert_articles([item.article for item in items])
            fresh = []
            for item in items:
                if item.article.id in inserted:
                    inserted.discard(item.article.id)
                    fresh.append(item)
            self._articles += len(fresh)
            self._dirty = self._dirty or bool(fresh)
            chunks = [
                (chunk, vector, sentences)
                for item in fresh
                for chunk, vector, sentences in zip(
                    item.chunks,
                    rounded_chunk_vectors(item.vectors),  # the embedded store's values
                    item.sentence_vectors,
                    strict=True,
                )
            ]
            if not chunks:
                return
            counts = [Counter(tokens) for tokens in tokenize([c.text for c, _, _ in chunks])]
            ids = self._term_ids(counts)
            rowids = self._next_rowids(len(chunks))
            with self.connection.cursor().copy(
                "COPY chunks (rowid, article_id, ordinal, start_offset, end_offset, sentences,"
                " embedding, sentence_codes, sentence_scales, term_ids, length) FROM STDIN"
            ) as copy:
                for rowid, (chunk, vector, sentences), terms in zip(
                    rowids, chunks, counts, strict=True
                ):
                    codes, scales = quantise(sentences)
                    copy.write_row(
                        (
                            rowid,
                            chunk.article_id,
                            chunk.ordinal,
                            chunk.start,
                            chunk.end,
                            _int_array(chunk.sentences),
                            halfvec_text(vector),
                            codes,
                            scales,
                            "{" + ",".join(str(ids[t]) for t in terms) + "}",
                            terms.total(),
                        )
                    )
            with self.connection.cursor().copy(
                "COPY postings (term_id, tf, rowid, length) FROM STDIN (FORMAT binary)"
            ) as copy:
                copy.write(_postings_copy(rowids, counts, ids))
        self._chunks += len(chunks)
        self._length += sum(terms.total() for terms in counts)

    def _insert_articles(self, articles: Sequence[Article]) -> set[str]:
        """Insert articles whose content is not stored yet; returns the ids inserted."""
        columns = ("id", "title", "text", "url", "source", "published", "dateline")
        values = [[getattr(a, c) for a in articles] for c in (*columns, "content_hash")]
        try:
            rows = self.connection.execute(
                "INSERT INTO articles (id, title, text, url, source, published, dateline,"
                " content_hash) SELECT * FROM unnest(%s::text[], %s::text[], %s::text[],"
                " %s::text[], %s::text[], %s::text[], %s::text[], %s::text[])"
                " ON CONFLICT (content_hash) DO NOTHING RETURNING id",
                values,
            ).fetchall()
        except psycopg.errors.UniqueViolation as error:
            raise IndexStoreError(
                f"an article id is already stored with other content: {error.diag.message_detail}"
            ) from None
        return {str(row[0]) for row in rows}

    def _term_ids(self, counts: Sequence[Counter[str]]) -> dict[str, int]:
        """The ids of the terms of these chunks (new terms get one), with each term's
        document frequency raised by the chunks holding it."""
        frequencies: Counter[str] = Counter()
        for chunk_terms in counts:
            frequencies.update(chunk_terms.keys())
        terms = sorted(frequencies)
        ids: dict[str, int] = dict(
            self.connection.execute(
                "SELECT term, id FROM terms WHERE term = ANY(%s::text[])", (terms,)
            ).fetchall()
        )
        new = [t for t in terms if t not in ids]
        if new:
            ids.update(
                self.connection.execute(
                    "INSERT INTO terms (term, df) SELECT unnest(%s::text[]), 0 RETURNING term, id",
                    (new,),
                ).fetchall()
            )
        self._change_frequencies([ids[t] for t in terms], [frequencies[t] for t in terms])
        return ids

    def _change_frequencies(self, term_ids: list[int], changes: list[int]) -> None:
        self.connection.execute(
            "UPDATE terms SET df = terms.df + d.n FROM unnest(%s::int4[], %s::int8[]) AS d(id, n)"
            " WHERE terms.id = d.id",
            (term_ids, changes),
        )

    def _next_rowids(self, count: int) -> list[int]:
        """``count`` new chunk row ids, ascending (never used before, never reused)."""
        rows = self.connection.execute(
            "SELECT nextval(pg_get_serial_sequence('chunks', 'rowid')) FROM generate_series(1, %s)",
            (count,),
        ).fetchall()
        return sorted(int(r[0]) for r in rows)

    def delete(self, article_ids: Collection[str]) -> int:
        """Delete articles and their chunks; returns how many chunks went with them."""
        ids = sorted(set(article_ids))
        if not ids:
            return 0
        with self.store.translated(self.store.primary_where):
            removed = self.connection.execute(
                "DELETE FROM chunks WHERE article_id = ANY(%s::text[])"
                " RETURNING rowid, term_ids, length",
                (ids,),
            ).fetchall()
            articles = self.connection.execute(
                "DELETE FROM articles WHERE id = ANY(%s::text[]) RETURNING id", (ids,)
            ).fetchall()
            if removed:
                term_ids = [t for _, terms, _ in removed for t in terms]
                rowids = [r for r, terms, _ in removed for _ in terms]
                self.connection.execute(
                    "DELETE FROM postings p USING unnest(%s::int4[], %s::int8[])"
                    " AS d(term_id, rowid) WHERE p.term_id = d.term_id AND p.rowid = d.rowid",
                    (term_ids, rowids),
                )
                fewer = Counter(term_ids)
                self._change_frequencies(list(fewer), [-n for n in fewer.values()])
        self._length -= sum(int(length) for _, _, length in removed)
        self._chunks -= len(removed)
        self._articles -= len(articles)
        self._dirty = self._dirty or bool(articles)
        return len(removed)

    def commit(self) -> None:
        """Commit the changes so far as one generation (a rebuild commits only at the
        end of its block, so that readers never see part of it)."""
        if not self.rebuild:
            self.finish()

    def finish(self) -> None:
        """Commit what is pending (if anything changed) and start afresh."""
        with self.store.translated(self.store.primary_where):
            if not self._dirty:
                self.connection.rollback()
                return
            chunks, indexed_chunks = self._write_statistics()
            self.connection.commit()
        self._articles = self._chunks = self._length = 0
        self._dirty = False
        self.store.after_write(chunks, indexed_chunks)

    def abort(self) -> None:
        """Roll back what was not committed (quietly: the connection may be gone)."""
        with suppress(psycopg.Error):
            self.connection.rollback()

    def _write_statistics(self) -> tuple[int, int]:
        """Count this transaction's changes into ``meta``; returns the chunks stored and
        the chunks the vector index was built over."""
        identity = self.store.identity
        counts = "articles = excluded.articles, chunks = excluded.chunks,"
        counts += " total_length = excluded.total_length"
        if self.rebuild:  # a new corpus, perhaps for another model
            update = (
                "model_name = excluded.model_name, dimension = excluded.dimension,"
                " embed_backend = excluded.embed_backend, vector_space = excluded.vector_space,"
                " settings = excluded.settings, created_at = now(), vector_index_chunks = 0, "
                + counts
            )
        else:
            update = (
                "articles = meta.articles + excluded.articles,"
                " chunks = meta.chunks + excluded.chunks,"
                " total_length = meta.total_length + excluded.total_length"
            )
        row = self.connection.execute(
            "INSERT INTO meta (model_name, dimension, embed_backend, vector_space, settings,"
            " generation, articles, chunks, total_length)"
            " VALUES (%s, %s, %s, %s, %s, 1, %s, %s, %s)"
            " ON CONFLICT (singleton) DO UPDATE SET generation = meta.generation + 1, "
            + update
            + " RETURNING chunks, vector_index_chunks",
            (
                identity.model_name,
                identity.dimension,
                identity.embed_backend,
                identity.vector_space,
                Jsonb(self.store.settings_record),
                self._articles,
                self._chunks,
                self._length,
            ),
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


class PostgresStore:
    """The store in one PostgreSQL database (reads optionally from a replica).

    Nothing connects until the first use; the schema is brought up to date then. A
    database that cannot be reached raises :class:`IndexStoreError` on each use, and
    the next use after it returns succeeds (the pools reconnect by themselves)."""

    def __init__(
        self,
        url: str,
        identity: StoreIdentity,
        *,
        read_url: str | None = None,
        pool_size: int = 4,
        statement_timeout_ms: int = 10_000,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        settings_record: dict[str, object] | None = None,
        exact_search_below: int = EXACT_SEARCH_BELOW,
    ) -> None:
        self.url = url
        self.read_url = read_url
        self.identity = identity
        self.pool_size = pool_size
        self.statement_timeout_ms = statement_timeout_ms
        self.connect_timeout_s = connect_timeout_s
        self.settings_record = settings_record or {}
        self.exact_search_below = exact_search_below
        self.primary_where = _where(url)
        self.read_where = _where(read_url) if read_url else self.primary_where
        self._primary: _Database | None = None
        self._replica: _Database | None = None
        self._open_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._migrated = False
        self._build_lock = threading.Lock()
        self._building: threading.Thread | None = None
        self._build_requested = False

    # -- connections ----------------------------------------------------------------
    def _databases(self) -> tuple[_Database, _Database]:
        """The primary and the database reads go to (the same unless ``read_url``),
        with the schema brought up to date on first use."""
        primary, replica = self._primary, self._replica
        if self._migrated and primary is not None and replica is not None:
            return primary, replica
        with self._open_lock:
            if self._primary is None:
                self._primary = self._database(self.url, "rag-primary", self.primary_where)
                self._replica = self._primary
                if self.read_url:
                    self._replica = self._database(self.read_url, "rag-replica", self.read_where)
            assert self._replica is not None
            opened = not self._migrated
            if opened:
                with (
                    self.translated(self.primary_where),
                    self._primary.pool.connection() as connection,
                ):
                    migrate(connection, self.identity.dimension)
                self._migrated = True
            databases = self._primary, self._replica
        if opened:  # a build may be due from before (cut short, or after an upgrade)
            self._build_in_background()
        return databases

    def _database(self, url: str, name: str, where: str) -> _Database:
        given = conninfo_to_dict(url)
        options = " ".join(
            [
                str(given.get("options") or ""),
                f"-c statement_timeout={int(self.statement_timeout_ms)}",
                "-c ivfflat.iterative_scan=relaxed_order",
            ]
        ).strip()
        pool: ConnectionPool[Connection] = ConnectionPool(
            url,
            kwargs={
                "autocommit": True,
                "connect_timeout": given.get("connect_timeout")
                or max(1, round(self.connect_timeout_s)),
                "application_name": given.get("application_name") or "newsqa",
                "options": options,
            },
            min_size=1,
            max_size=max(2, self.pool_size),
            timeout=self.connect_timeout_s,
            check=ConnectionPool.check_connection,
            name=name,
            open=False,
        )
        pool.open(wait=False)
        return _Database(pool, where)

    @contextmanager
    def translated(self, where: str) -> Iterator[None]:
        """Raise database failures (unreachable, timed out, connection lost) as
        :class:`IndexStoreError` naming the server."""
        try:
            yield
        except PoolTimeout as error:
            raise IndexStoreError(
                f"PostgreSQL at {where} cannot be reached (no connection within "
                f"{self.connect_timeout_s:g} s)"
            ) from error
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            message = " ".join(str(error).split()) or type(error).__name__
            raise IndexStoreError(f"PostgreSQL at {where}: {message}") from error

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection to the database reads go to (autocommit)."""
        _, replica = self._databases()
        with self.translated(replica.where), replica.pool.connection() as connection:
            yield connection

    @contextmanager
    def _primary_connection(self) -> Iterator[Connection]:
        primary, _ = self._databases()
        with self.translated(primary.where), primary.pool.connection() as connection:
            yield connection

    @contextmanager
    def _primary_untimed(self) -> Iterator[Connection]:
        """A primary connection without a statement timeout (for writes and index builds,
        which may take long, as may their waits for locks)."""
        with self._primary_connection() as connection:
            connection.execute("SET statement_timeout = 0")
            try:
                yield connection
            finally:
                try:
                    connection.execute("RESET statement_timeout")
                except psycopg.Error:  # the connection is lost: the pool drops it
                    connection.close()

    @contextmanager
    def _locked(self) -> Iterator[Connection]:
        """The primary's write lock (against threads and processes), held on the
        connection yielded, which is in a transaction (not autocommit)."""
        with self._write_lock, self._primary_untimed() as connection:
            connection.execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK,))
            connection.autocommit = False
            try:
                yield connection
            finally:
                try:
                    connection.rollback()
                    connection.autocommit = True
                    connection.execute("SELECT pg_advisory_unlock(%s)", (WRITE_LOCK,))
                except psycopg.Error:  # a lost connection holds no lock: the pool drops it
                    connection.close()

    # -- the Store protocol ---------------------------------------------------------
    def view(self) -> PostgresView | None:
        """The newest committed state; ``None`` until the first write commits."""
        with self.reading() as connection:
            row = connection.execute(
                "SELECT model_name, dimension, embed_backend, vector_space, generation,"
                f" articles, chunks, {IVF_LISTS} FROM meta".encode()
            ).fetchone()
        if row is None or int(row[4]) == 0:
            return None
        self.check_identity(row[:4])
        return PostgresView(self, int(row[4]), (int(row[5]), int(row[6])), row[7])

    @contextmanager
    def writing(self) -> Iterator[PostgresWriter]:
        """One writer at a time across processes: a transaction per
        :meth:`PostgresWriter.commit` and at the end of the block; an exception rolls
        back what was not committed."""
        with self._locked() as connection:
            writer = PostgresWriter(self, connection, rebuild=False)
            try:
                yield writer
                writer.finish()
            except BaseException:
                writer.abort()
                raise

    @contextmanager
    def rebuilding(self) -> Iterator[PostgresWriter]:
        """Replace every article in one transaction (for this store's model): readers
        see the old corpus until the block succeeds, and keep it if it fails."""
        with self._locked() as connection:
            writer = PostgresWriter(self, connection, rebuild=True)
            try:
                yield writer
                writer.finish()
            except BaseException:
                writer.abort()
                raise

    def stored_articles(self) -> list[Article]:
        """Every stored article, in the order added."""
        with self._primary_connection() as connection, connection.transaction():
            connection.execute("SET LOCAL statement_timeout = 0")  # the whole corpus
            rows = connection.execute(
                f"SELECT {ARTICLE_COLUMNS} FROM articles a ORDER BY a.position"
            ).fetchall()
        return [article_from_row(row) for row in rows]

    def check(self) -> list[str]:
        """Consistency problems between the counts, statistics and rows (empty when
        sound), read in one snapshot."""
        if self.view() is None:
            return ["no index"]
        problems: list[str] = []
        with self._primary_connection() as connection, connection.transaction():
            connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            connection.execute("SET LOCAL statement_timeout = 0")  # scans every chunk
            problems += _consistency_problems(connection, self.identity.dimension)
        return problems

    def merge(self, force: bool = False) -> bool:
        """Build the vector index if it is due (or ``force``): the one search structure
        PostgreSQL does not maintain with each write (see
        :mod:`index.postgres.vector_index`); ``False`` when there was nothing to do or
        another process is building it. Reads and writes go on meanwhile."""
        with self._primary_untimed() as connection:
            return build_if_due(connection, self.exact_search_below, force=force)

    def after_write(self, chunks: int, indexed_chunks: int) -> None:
        """Start building the vector index in the background if a write made it due."""
        if build_due(chunks, indexed_chunks, self.exact_search_below):
            self._build_in_background()

    def _build_in_background(self) -> None:
        with self._build_lock:
            self._build_requested = True
            if self._building is not None:
                return  # it looks again when it is done
            self._building = threading.Thread(
                target=self._build_while_requested, name="vector-index", daemon=True
            )
            self._building.start()

    def _build_while_requested(self) -> None:
        while True:
            with self._build_lock:
                if not self._build_requested:
                    self._building = None
                    return
                self._build_requested = False
            try:
                while self.merge():  # and again if a rebuild replaced the corpus meanwhile
                    pass
            except Exception:  # a failed build loses nothing: searches stay exact
                log.exception("building the vector index in %s failed", self.primary_where)

    def wait_for_merge(self) -> None:
        """Block until a vector index build started by this process has finished."""
        building = self._building
        if building is not None:
            building.join()

    def close(self) -> None:
        """Finish a vector index build, then close the connection pools."""
        self.wait_for_merge()
        with self._open_lock:
            for database in {id(d): d for d in (self._primary, self._replica) if d}.values():
                database.pool.close()
            self._primary = self._replica = None
            self._migrated = False

    def check_identity(self, row: Sequence[Any]) -> None:
        """Refuse a database whose vectors another model or vector space made."""
        model_name, dimension, embed_backend, vector_space = row
        wanted = self.identity
        if model_name != wanted.model_name or dimension != wanted.dimension:
            raise IndexStoreError(
                f"the index in {self.primary_where} was built with model {model_name!r} "
                f"({dimension} dimensions) but the settings ask for {wanted.model_name!r} "
                f"({wanted.dimension} dimensions); use the same model, point "
                "RAG_DATABASE_URL at another database, or run `rag rebuild`"
            )
        if vector_space != wanted.vector_space:
            raise IndexStoreError(
                f"the index in {self.primary_where} holds {vector_space} vectors from the "
                f"{embed_backend!r} embedding backend, which do not mix with the "
                f"{wanted.vector_space} vectors of {wanted.embed_backend!r} that the "
                f"settings ask for; set RAG_EMBED_BACKEND={embed_backend}, or run "
                f"`rag rebuild` to re-embed the articles with {wanted.embed_backend!r}"
            )


def _consistency_problems(connection: Connection, dimension: int) -> list[str]:
    problems: list[str] = []
    row = connection.execute(
        "SELECT m.articles, m.chunks, m.total_length,"
        " (SELECT count(*) FROM articles), (SELECT count(*) FROM chunks),"
        " (SELECT coalesce(sum(length), 0) FROM chunks) FROM meta m"
    ).fetchone()
    assert row is not None
    articles, chunks, length, stored_articles, stored_chunks, stored_length = map(int, row)
    if articles != stored_articles:
        problems.append(f"meta counts {articles} articles, the table holds {stored_articles}")
    if chunks != stored_chunks:
        problems.append(f"meta counts {chunks} chunks, the table holds {stored_chunks}")
    if length != stored_length:
        problems.append(f"meta's total length {length} differs from the chunks' {stored_length}")
    wrong_df = connection.execute(
        "SELECT count(*) FROM terms t FULL JOIN"
        " (SELECT term_id AS id, count(*) AS df FROM postings GROUP BY term_id) p USING (id)"
        " WHERE coalesce(t.df, 0) != coalesce(p.df, 0)"
    ).fetchone()
    if wrong_df and wrong_df[0]:
        problems.append(f"{wrong_df[0]} terms have a wrong document frequency")
    postings = connection.execute(
        "SELECT (SELECT count(*) FROM postings),"
        " (SELECT coalesce(sum(cardinality(term_ids)), 0) FROM chunks),"
        " (SELECT count(*) FROM postings p LEFT JOIN chunks c USING (rowid)"
        "  WHERE c.rowid IS NULL OR c.length != p.length OR NOT p.term_id = ANY(c.term_ids))"
    ).fetchone()
    assert postings is not None
    if postings[0] != postings[1] or postings[2]:
        problems.append(
            f"{postings[0]} postings for {postings[1]} chunk terms, {postings[2]} of them "
            "not matching a chunk"
        )
    mismatched = connection.execute(
        "SELECT count(*) FROM chunks WHERE"
        " length(sentence_codes) NOT IN"
        " (array_length(sentences, 1) * %s, array_length(sentences, 1) * %s)"
        " OR length(sentence_scales) != array_length(sentences, 1) * 4",
        code_lengths(dimension),
    ).fetchone()
    if mismatched and mismatched[0]:
        problems.append(f"{mismatched[0]} chunks lack a vector for each of their sentences")
    outside = connection.execute(
        "SELECT count(*) FROM chunks c JOIN articles a ON a.id = c.article_id"
        " WHERE c.start_offset < 0 OR c.end_offset > length(a.text)"
        " OR c.start_offset > c.end_offset"
    ).fetchone()
    if outside and outside[0]:
        problems.append(f"{outside[0]} chunks lie outside their article's text")
    invalid = connection.execute(
        "SELECT string_agg(c.relname, ', ') FROM pg_index i JOIN pg_class c"
        " ON c.oid = i.indexrelid WHERE i.indrelid IN ('chunks'::regclass,"
        " 'articles'::regclass, 'terms'::regclass, 'postings'::regclass)"
        " AND NOT i.indisvalid AND i.indexrelid NOT IN"  # not one being built now
        " (SELECT index_relid FROM pg_stat_progress_create_index)"
    ).fetchone()
    if invalid and invalid[0]:
        problems.append(f"invalid indexes: {invalid[0]}")
    return problems


def _check_item(item: NewArticle) -> None:
    for chunk, sentences in zip(item.chunks, item.sentence_vectors, strict=True):
        if len(sentences) != len(chunk.sentences):
            raise ValueError(f"{len(sentences)} vectors for {len(chunk.sentences)} sentences")
        if item.article.text[chunk.start : chunk.end] != chunk.text:
            raise ValueError(f"chunk {chunk.passage_id} is not its article's text")
    if len(item.vectors) != len(item.chunks):
        raise ValueError(f"{len(item.vectors)} vectors for {len(item.chunks)} chunks")


def _article(connection: Connection, condition: str, value: str) -> Article | None:
    row = connection.execute(
        f"SELECT {ARTICLE_COLUMNS} FROM articles a WHERE {condition}".encode(), (value,)
    ).fetchone()
    return None if row is None else article_from_row(row)


def _stored_chunk(row: Sequence[Any]) -> StoredChunk:
    rowid, article_id, ordinal, start, end, text, sentences = row
    spans = tuple((int(a), int(b)) for a, b in sentences)
    return StoredChunk(int(rowid), Chunk(article_id, ordinal, start, end, text, spans))


def _vector_text(vector: Vectors) -> str:
    """A float32 vector in pgvector's text form (exact: each value as its shortest repr)."""
    return "[" + ",".join(map(repr, np.asarray(vector, dtype=np.float32).ravel().tolist())) + "]"


def halfvec_text(vector: Vectors) -> str:
    """A vector rounded to float16, in text form."""
    values = np.asarray(vector, dtype=np.float16).ravel().astype(np.float32).tolist()
    return "[" + ",".join(map(repr, values)) + "]"


def _int_array(pairs: Sequence[tuple[int, int]]) -> str:
    """Pairs as a PostgreSQL two-dimensional integer array literal."""
    return "{" + ",".join(f"{{{a},{b}}}" for a, b in pairs) + "}"


_POSTING = np.dtype(
    [
        ("fields", ">i2"),
        ("term_size", ">i4"),
        ("term", ">i4"),
        ("tf_size", ">i4"),
        ("tf", ">i4"),
        ("rowid_size", ">i4"),
        ("rowid", ">i8"),
        ("length_size", ">i4"),
        ("length", ">i4"),
    ]
)
"""One row of ``COPY postings (term_id, tf, rowid, length)`` in PostgreSQL's binary form."""


def _postings_copy(
    rowids: Sequence[int], counts: Sequence[Counter[str]], ids: dict[str, int]
) -> bytes:
    """The postings of these chunks as one binary COPY stream (built by numpy, not row
    by row: a chunk has some fifty postings)."""
    sizes = [len(terms) for terms in counts]
    rows = np.zeros(sum(sizes), dtype=_POSTING)
    rows["fields"] = 4
    rows["term_size"] = rows["tf_size"] = rows["length_size"] = 4
    rows["rowid_size"] = 8
    rows["term"] = [ids[t] for terms in counts for t in terms]
    rows["tf"] = [min(tf, MAX_TERM_COUNT) for terms in counts for tf in terms.values()]
    rows["rowid"] = np.repeat(np.asarray(rowids, dtype=np.int64), sizes)
    rows["length"] = np.repeat([terms.total() for terms in counts], sizes)
    header = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
    return header + rows.tobytes() + (-1).to_bytes(2, "big", signed=True)


def _where(url: str) -> str:
    """A server as ``host:port/database`` (no user, no password) for messages."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the configured database (unparsable URL)"
    host = str(parts.get("host") or "localhost")
    port = str(parts.get("port") or "5432")
    return f"{host}:{port}/{parts.get('dbname') or parts.get('user') or 'postgres'}"
