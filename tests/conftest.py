"""Shared fixtures: one real embedding model, one pipeline over the sample articles, and
one PostgreSQL server for the session."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.embedding import Embedder
from rag.pipeline import Pipeline
from rag.settings import PROJECT_ROOT, Settings

SAMPLE_ARTICLES = PROJECT_ROOT / "data" / "articles"


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The real all-MiniLM-L6-v2, loaded once for the whole session (offline)."""
    settings = Settings()
    model = Embedder(settings.model_name, settings.model_path, threads=settings.torch_threads)
    model.warm_up()
    return model


@pytest.fixture(scope="session")
def sample_pipeline(embedder: Embedder, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """A read-only pipeline over the three sample articles (do not write to it)."""
    index_dir = tmp_path_factory.mktemp("sample-index")
    return Pipeline.open(Settings(index_dir=index_dir), embedder)


@pytest.fixture
def empty_pipeline(embedder: Embedder, tmp_path: Path) -> Pipeline:
    """A pipeline over a new, empty index directory, for tests that write."""
    return Pipeline.open(
        Settings(index_dir=tmp_path / "index", seed_sample_articles=False), embedder
    )


@pytest.fixture
def writable_pipeline(sample_pipeline: Pipeline, embedder: Embedder, tmp_path: Path) -> Pipeline:
    """A pipeline over a private copy of the sample index, for tests that write."""
    index_dir = tmp_path / "sample-copy"
    shutil.copytree(sample_pipeline.settings.index_dir, index_dir, symlinks=True)
    return Pipeline.open(Settings(index_dir=index_dir), embedder)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """A PostgreSQL 18 + pgvector server in a temporary directory, for the session
    (durability settings off: a test server's data is thrown away)."""
    try:
        from index.postgres.local import FAST_UNSAFE, LocalPostgres, binaries

        binaries()
    except (ImportError, RuntimeError) as error:
        pytest.skip(f"PostgreSQL tests need the dev extras: {error}")
    server = LocalPostgres(Path(tempfile.mkdtemp(prefix="rag-pg-")), settings=FAST_UNSAFE)
    server.start()
    try:
        yield server
    finally:
        server.remove()
