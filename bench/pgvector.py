"""The PostgreSQL store's vector index at scale: pgvector IVFFlat over ``halfvec`` sized
as the store sizes it (lists; the lists probed swept around the store's), beside HNSW
(m 16, ef_construction 64; ``ef_search`` swept), which the store used before: a million
synthetic chunk vectors by default, recall@10 against exact search, search latency and
build time.

The vectors and queries are those of ``bench/scale.py`` (drawn around real embeddings of
news chunks; queries near indexed topics and around held-out ones). They go into a table
of ids and vectors only, loaded by binary ``COPY`` and indexed after: the store's write
path also keeps BM25 postings, whose cost is not what this measures. Each search is the
store's query (``ORDER BY embedding <#> query LIMIT 10``) on one connection.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from rich.console import Console

from bench.common import Figure, Report, p50, timed
from bench.scale import (
    QUERIES,
    Queries,
    Synthesiser,
    drawn_queries,
    exact_top,
    news_articles,
    real_topics,
    recall_at_10,
    short_queries,
)
from index.postgres.local import LocalPostgres
from index.postgres.store import halfvec_text
from index.vectors import ivf_lists, ivf_probes
from rag.embedding import Embedder
from rag.settings import Settings

BENCH = "pgvector"
RECALL_BAR = 0.95
COPY_ROWS = 50_000
"""Rows per binary COPY block."""
SERVER_SETTINGS = ("maintenance_work_mem=3GB", "max_parallel_maintenance_workers=1")
"""Enough memory to build a million-vector HNSW graph without spilling (about 1.5 GB), and
one worker beside the leader: two cores."""


@dataclass(frozen=True)
class VectorIndexKind:
    """An index to build and the search setting to sweep over it."""

    method: str
    options: str
    setting: str
    values: tuple[int, ...]
    store_value: int | None
    """The value the store searches with (``None``: the store does not use this index)."""

    def about(self) -> str:
        return f"{self.method} ({self.options})"


def index_kinds(chunks: int) -> tuple[VectorIndexKind, ...]:
    """The store's IVFFlat index for ``chunks`` vectors, then HNSW for comparison."""
    lists = ivf_lists(chunks)
    probes = ivf_probes(lists, chunks)
    return (
        VectorIndexKind(
            "ivfflat",
            f"lists = {lists}",
            "ivfflat.probes",
            tuple(
                sorted({min(lists, p) for p in (probes // 2 or 1, probes, 2 * probes, 4 * probes)})
            ),
            probes,
        ),
        VectorIndexKind(
            "hnsw", "m = 16, ef_construction = 64", "hnsw.ef_search", (100, 400, 800), None
        ),
    )


def copy_rows(ids: np.ndarray, vectors: np.ndarray) -> bytes:
    """Rows ``(id bigint, embedding halfvec)`` in PostgreSQL's binary COPY tuple format
    (big-endian; a halfvec is its dimension, a reserved int16, then IEEE half floats)."""
    dimension = vectors.shape[1]
    row = np.dtype(
        [
            ("fields", ">i2"),
            ("id_size", ">i4"),
            ("id", ">i8"),
            ("vector_size", ">i4"),
            ("dimension", ">i2"),
            ("unused", ">i2"),
            ("values", ">f2", (dimension,)),
        ]
    )
    rows = np.zeros(len(ids), dtype=row)
    rows["fields"] = 2
    rows["id_size"] = 8
    rows["id"] = ids
    rows["vector_size"] = 4 + 2 * dimension
    rows["dimension"] = dimension
    rows["values"] = vectors.astype(np.float16)
    return rows.tobytes()


def run(report: Report, work: Path, *, chunks: int, log: Console) -> None:
    """Load ``chunks`` synthetic vectors into PostgreSQL, then build each kind of vector
    index and search it with each kind of query; recall against exact search over the
    same float16 vectors."""
    embedder = Embedder.from_settings(Settings(embed_backend="onnx-int8"))
    centres = 20 if chunks < 50_000 else 400
    articles = news_articles(centres + centres // 4)
    topics = real_topics(embedder, articles[:centres], log, "topic centres")
    held_out = real_topics(embedder, articles[centres:], log, "held-out topics")
    synth = Synthesiser(topics, seed=0)
    kinds: list[Queries] = [
        drawn_queries(synth, QUERIES, "synthetic", "held-out draws of the synthetic distribution"),
        short_queries(embedder, topics, QUERIES, 1, "short", "12-word windows of the centres"),
        drawn_queries(Synthesiser(held_out, seed=2), QUERIES, "held-out topics", "other articles"),
        short_queries(embedder, held_out, QUERIES, 3, "held-out short", "windows of others"),
    ]
    log.print(f"{BENCH}: drawing {chunks:,} synthetic vectors")
    vectors = np.concatenate(
        [synth.draw(min(100_000, chunks - start))[0] for start in range(0, chunks, 100_000)]
    ).astype(np.float16)
    server = LocalPostgres(work / "pgvector-postgres", settings=SERVER_SETTINGS)
    server.start()
    try:
        with psycopg.connect(server.url(), autocommit=True) as connection:
            connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
            connection.execute(
                f"CREATE TABLE vectors (id bigint, embedding halfvec({vectors.shape[1]}))".encode()
            )
            log.print(f"{BENCH}: loading by binary COPY")
            load_s = timed(lambda: _load(connection, vectors))
            exact_vectors = vectors.astype(np.float32)
            exact = [exact_top(exact_vectors, queries.vectors, 10) for queries in kinds]
            for index in index_kinds(chunks):
                log.print(f"{BENCH}: building {index.about()}")
                build_s = timed(
                    partial(
                        connection.execute,
                        f"CREATE INDEX vectors_embedding ON vectors USING {index.method}"
                        f" (embedding halfvec_ip_ops) WITH ({index.options})".encode(),
                    )
                )
                report.add(
                    Figure(
                        BENCH,
                        f"{index.method} build ({chunks:,} vectors)",
                        build_s,
                        "s",
                        note=f"{index.options}; 2 cores",
                    )
                )
                _sweep(report, connection, index, kinds, exact)
                connection.execute("DROP INDEX vectors_embedding")
    finally:
        server.remove()
    report.add(Figure(BENCH, f"load by COPY ({chunks:,} vectors)", load_s, "s"))


def _sweep(
    report: Report,
    connection: psycopg.Connection[Any],
    index: VectorIndexKind,
    kinds: list[Queries],
    exact: list[np.ndarray],
) -> None:
    """Recall@10 and search p50 of each kind of query at each value of the setting."""
    for queries, exact_top10 in zip(kinds, exact, strict=True):
        for value in index.values:
            connection.execute(f"SET {index.setting} = {value}".encode())
            found, latencies = _search(connection, queries)
            recall = recall_at_10(found, exact_top10)
            store_setting = value == index.store_value
            report.add(
                Figure(
                    BENCH,
                    f"{index.method} recall@10, {queries.kind} queries, {index.setting} {value}",
                    recall,
                    "",
                    f">= {RECALL_BAR:g}" if store_setting else "",
                    recall >= RECALL_BAR if store_setting else None,
                    f"search p50 {p50(latencies):.1f} ms"
                    + ("; the store's setting" if store_setting else "")
                    + f"; {queries.about}",
                )
            )


def _load(connection: psycopg.Connection[Any], vectors: np.ndarray) -> None:
    with connection.cursor().copy(
        "COPY vectors (id, embedding) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.write(b"PGCOPY\n\xff\r\n\x00" + bytes(8))  # signature, flags, header extension
        for start in range(0, len(vectors), COPY_ROWS):
            block = vectors[start : start + COPY_ROWS]
            copy.write(copy_rows(np.arange(start, start + len(block)), block))
        copy.write(b"\xff\xff")  # end of data


def _search(
    connection: psycopg.Connection[Any], queries: Queries
) -> tuple[list[list[int]], list[float]]:
    found, latencies = [], []
    for vector in queries.vectors:
        text = halfvec_text(vector)
        started = time.perf_counter()
        rows = connection.execute(
            "SELECT id FROM vectors ORDER BY embedding <#> %s::halfvec LIMIT 10", (text,)
        ).fetchall()
        latencies.append((time.perf_counter() - started) * 1000)
        found.append([int(row[0]) for row in rows])
    return found, latencies
