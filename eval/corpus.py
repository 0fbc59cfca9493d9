"""Throw-away indexes for evaluation, cached on disk by what determines their content."""

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
    index_dir = cache_dir / f"{name}-{index_key(settings, fingerprint)}"
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
