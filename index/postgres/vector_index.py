"""The PostgreSQL store's vector index: a pgvector IVFFlat index over the chunk vectors,
sized as the embedded store sizes its FAISS inverted file (:func:`index.vectors.ivf_lists`,
:func:`index.vectors.ivf_probes`), built in the background once the table is large enough
and clustered again after it has grown :data:`index.vectors.IVF_RETRAIN_GROWTH` times.

Why IVFFlat rather than HNSW: at a million synthetic chunks (``python -m bench
pgvector``, the vectors of ``bench/scale.py``) 2,000 lists probed 16 at a time found
.97-1.0 of the exact top 10 for the bench's four kinds of queries in about 8 ms, after a
97 s build on 2 cores; HNSW (m 16, ef_construction 64) found only .68-.96 at ef_search 400
in 8-12 ms, after 4.5 min. Its drawback, clusters fixed when it is built, is what the
re-clustering after growth answers.

A build never blocks reads or writes: ``CREATE INDEX CONCURRENTLY`` under a new name,
then ``meta.vector_index_chunks`` records the chunk count it was built over, then the
older vector indexes are dropped concurrently. Builds are serialised across processes by
an advisory lock; a build cut short (process killed, server restarted) leaves an invalid
index, which the next build drops first. A rebuild of the corpus sets the count to 0, so
the index is built again over the new vectors (and a build that overlapped the rebuild
records nothing: its rows were the old corpus). A rebuild that changes the vectors'
dimension cancels a build in flight (:func:`stop_builds`).
"""

from __future__ import annotations

import time
import uuid

import psycopg

from index.postgres.schema import Connection, embedding_dimension, vector_indexes
from index.protocol import IndexStoreError
from index.vectors import ivf_due, ivf_lists

BUILD_LOCK = 0x6E6577737161_0003
"""Advisory lock key held by the process building the vector index."""
IVF_LISTS = """(
    SELECT substring(array_to_string(c.reloptions, ',') FROM 'lists=([0-9]+)')::int
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
    WHERE i.indrelid = 'chunks'::regclass AND i.indisvalid AND am.amname = 'ivfflat'
    ORDER BY c.oid DESC LIMIT 1
)"""
"""SQL for the list count of the newest usable IVFFlat index on ``chunks`` (NULL: none)."""
BUILD_MEMORY_MB = 64
"""``maintenance_work_mem`` a build asks for beyond its sample (pgvector clusters a
sample of 50 vectors per list, which must fit in it)."""


def build_due(chunks: int, indexed_chunks: int, exact_search_below: int) -> bool:
    """Whether the vector index should be built now: the table has outgrown exact search
    and the index is missing or was built over far fewer chunks."""
    return chunks > 0 and chunks >= exact_search_below and ivf_due(chunks, indexed_chunks)


def build_if_due(connection: Connection, exact_search_below: int, *, force: bool) -> bool:
    """Build the vector index if it is due (or ``force``, over any non-empty table) and
    no other process is building it; ``True`` when it built one, ``False`` also when a
    rebuild cancelled it (:func:`stop_builds`). ``connection`` is the primary's,
    autocommit, without a statement timeout."""
    locked = connection.execute("SELECT pg_try_advisory_lock(%s)", (BUILD_LOCK,)).fetchone()
    if not (locked and locked[0]):
        return False
    try:
        return _build_if_due(connection, exact_search_below, force)
    except psycopg.errors.QueryCanceled:  # what it built is invalid: the rebuild drops it
        return False
    finally:
        connection.execute("SELECT pg_advisory_unlock(%s)", (BUILD_LOCK,))


def _build_if_due(connection: Connection, exact_search_below: int, force: bool) -> bool:
    """:func:`build_if_due` under the build lock."""
    state = connection.execute(
        "SELECT chunks, vector_index_chunks, created_at FROM meta"
    ).fetchone()
    if state is None:
        return False
    chunks, indexed_chunks, created_at = int(state[0]), int(state[1]), state[2]
    if not (chunks > 0 if force else build_due(chunks, indexed_chunks, exact_search_below)):
        return False
    older = []
    for name, valid in vector_indexes(connection):
        if valid:
            older.append(name)
        else:  # left by a build cut short
            connection.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"'.encode())
    lists = ivf_lists(chunks)
    sample_mb = lists * 50 * (8 + 2 * embedding_dimension(connection)) // 2**20
    connection.execute(f"SET maintenance_work_mem = '{BUILD_MEMORY_MB + sample_mb}MB'".encode())
    try:
        connection.execute(
            f'CREATE INDEX CONCURRENTLY "chunks_embedding_{uuid.uuid4().hex[:12]}" ON chunks'
            f" USING ivfflat (embedding halfvec_ip_ops) WITH (lists = {lists})".encode()
        )
    finally:
        connection.execute("RESET maintenance_work_mem")
    connection.execute(  # unless a rebuild replaced the corpus meanwhile
        "UPDATE meta SET vector_index_chunks = %s WHERE created_at = %s",
        (chunks, created_at),
    )
    for name in older:
        connection.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"'.encode())
    return True


STOP_BUILDS_TIMEOUT_S = 30.0
"""How long :func:`stop_builds` tries before it gives up."""
_BUILD_LOCK_HOLDERS = """
    SELECT pg_cancel_backend(pid) FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = %s
"""


def stop_builds(connection: Connection, timeout_s: float = STOP_BUILDS_TIMEOUT_S) -> None:
    """Hold the build lock until the end of ``connection``'s transaction, cancelling a
    build in flight in any process.

    For a rebuild that changes the vectors' dimension: altering the column needs the
    table to itself, and a concurrent build holds a lock on it (and waits for older
    transactions, the rebuild's among them: a deadlock). Such a build indexes vectors
    the rebuild replaces. The lock is tried, never waited for in the database, so the
    wait cannot join a deadlock; a build cancelled leaves an invalid index, which the
    rebuild drops with the others."""
    deadline = time.monotonic() + timeout_s
    while True:
        locked = connection.execute(
            "SELECT pg_try_advisory_xact_lock(%s)", (BUILD_LOCK,)
        ).fetchone()
        if locked and locked[0]:
            return
        if time.monotonic() > deadline:
            raise IndexStoreError(
                f"a vector index build did not stop within {timeout_s:g} s of being cancelled"
            )
        connection.execute(_BUILD_LOCK_HOLDERS, (BUILD_LOCK,))
        time.sleep(0.05)
