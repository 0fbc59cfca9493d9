"""Throw-away indexes for evaluation, cached by what determines their content: in a
folder each (the embedded store) or in a database each (``RAG_STORE=postgres``, on the
server of ``RAG_DATABASE_URL``)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from index.store import FORMAT_VERSION
from rag.embedding import Embedder, vector_space
from rag.pipeline import Pipeline
from rag.settings import Settings
from records import Article

_COMPLETE = "eval-complete.json"


def index_key(settings: Settings, fingerprint: str) -> str:
    """Hash of the data set and of every setting that changes what gets indexed."""
    inputs = {
        "data": fingerprint,
        "model": settings.model_name,
        "vectors": vector_space(settings.embed_backend),
        "index_format": FORMAT_VERSION,
        "chunk_max_tokens": settings.chunk_max_tokens,
        "chunk_overlap_sentences": settings.chunk_overlap_sentences,
        "max_sentence_chars": settings.max_sentence_chars,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]


def cached_pipeline(
    settings: Settings,
    embedder: Embedder,
    cache_dir: Path,
    name: str,
    fingerprint: str,
    articles: Sequence[Article],
    on_progress: Callable[[int, int], None] | None = None,
) -> Pipeline:
    """A pipeline over an index of ``articles`` under ``cache_dir``, built once and reused.

    The folder name carries :func:`index_key`, so a change of data or chunking settings
    builds a new index; a build that did not finish is thrown away and redone.
    """
    key = f"{name}-{index_key(settings, fingerprint)}"
    if settings.store == "postgres":
        return _cached_in_postgres(settings, embedder, key, articles, on_progress)
    index_dir = cache_dir / key
    marker = index_dir / _COMPLETE
    if index_dir.exists() and not marker.exists():
        shutil.rmtree(index_dir)
    pipeline = Pipeline.open(
        settings.model_copy(update={"index_dir": index_dir, "seed_sample_articles": False}),
        embedder,
    )
    if not marker.exists():
        report = pipeline.add([(a.source or a.id, a) for a in articles], on_progress)
        marker.write_text(
            json.dumps({"articles": len(report.added), "chunks": report.chunks_added}) + "\n"
        )
    return pipeline


def _cached_in_postgres(
    settings: Settings,
    embedder: Embedder,
    key: str,
    articles: Sequence[Article],
    on_progress: Callable[[int, int], None] | None,
) -> Pipeline:
    """The same, in a database of its own named after ``key`` on the server of
    ``settings.database_url``; a table ``eval_complete`` marks a finished build (a
    database without it is dropped and built again)."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    if not settings.database_url:
        raise ValueError("RAG_STORE=postgres needs RAG_DATABASE_URL (a server to build on)")
    database = "eval_" + key.replace("-", "_")
    url = make_conninfo(settings.database_url, dbname=database)
    with psycopg.connect(settings.database_url, autocommit=True) as admin:
        exists = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        complete = False
        if exists:
            with psycopg.connect(url, autocommit=True) as connection:
                row = connection.execute("SELECT to_regclass('eval_complete')").fetchone()
            complete = row is not None and row[0] is not None
            if not complete:
                admin.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(database)))
        if not complete:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    pipeline = Pipeline.open(
        settings.model_copy(
            update={"database_url": url, "database_read_url": None, "seed_sample_articles": False}
        ),
        embedder,
    )
    if not complete:
        pipeline.add([(a.source or a.id, a) for a in articles], on_progress)
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("CREATE TABLE eval_complete (built timestamptz DEFAULT now())")
    return pipeline
