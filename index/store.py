"""The index directory: numbered versions, a manifest, and an atomic ``current`` pointer.

Layout::

    <index_dir>/
        current -> v000007          (symlink, replaced atomically)
        v000007/ manifest.json  records.sqlite  vectors.faiss  lexical/
        .lock                       (inter-process write lock)

A write builds a complete new version in a temporary folder and then swaps ``current``,
so a crash at any point leaves the previous version intact and loadable.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from index.lexical import LexicalIndex
from index.records import RecordStore
from index.vectors import VectorIndex
from rag.articles import Article
from rag.chunking import Chunk
from rag.embedding import vector_space

FORMAT_VERSION = 2
"""2: chunks carry the offsets and vectors of their sentences."""
KEEP_VERSIONS = 2
_CURRENT = "current"


class IndexStoreError(RuntimeError):
    """The index on disk is missing, damaged or built for another model."""


@dataclass(frozen=True)
class NewArticle:
    """An article ready to store: its chunks, their vectors (one row per chunk) and, per
    chunk, the vectors of its sentences."""

    article: Article
    chunks: Sequence[Chunk]
    vectors: npt.NDArray[np.float32]
    sentence_vectors: Sequence[npt.NDArray[np.float32]]


@dataclass
class Snapshot:
    """One immutable, loaded version of the index."""

    path: Path
    manifest: dict[str, Any]
    records: RecordStore
    vectors: VectorIndex
    lexical: LexicalIndex

    @property
    def version(self) -> str:
        return self.path.name

    def check(self) -> list[str]:
        """Consistency problems between the parts of this version (empty when sound)."""
        problems = self.records.integrity_problems()
        chunks = self.records.count_chunks()
        if self.vectors.size != chunks:
            problems.append(f"FAISS holds {self.vectors.size} vectors for {chunks} chunks")
        if self.lexical.size != chunks:
            problems.append(f"BM25 holds {self.lexical.size} documents for {chunks} chunks")
        if self.manifest.get("chunks") != chunks:
            problems.append(
                f"manifest counts {self.manifest.get('chunks')} chunks, records {chunks}"
            )
        mismatched = self.records.mismatched_sentence_vectors(int(self.manifest["dimension"]))
        if mismatched:
            problems.append(f"{mismatched} chunks lack a vector for each of their sentences")
        if self.manifest.get("articles") != self.records.count_articles():
            problems.append("manifest article count differs from the records")
        stored = {c.rowid for c in self.records.all_chunks()}
        if set(self.lexical.rowids.tolist()) != stored:
            problems.append("BM25 row ids differ from the stored chunks")
        return problems


class IndexStore:
    """Reads and writes the versions of one index directory."""

    def __init__(
        self, directory: Path, model_name: str, dimension: int, backend: str = "torch"
    ) -> None:
        self.directory = directory
        self.model_name = model_name
        self.dimension = dimension
        self.backend = backend
        self._write_lock = threading.Lock()

    def current_version(self) -> str | None:
        """Name of the version ``current`` points to, or ``None`` if there is no index."""
        try:
            return os.readlink(self.directory / _CURRENT)
        except FileNotFoundError:
            return None

    def load(self) -> Snapshot | None:
        """Load the current version; ``None`` when the directory holds no index yet."""
        while True:
            version = self.current_version()
            if version is None:
                return None
            try:
                return self._load_version(self.directory / version)
            except IndexStoreError:
                if self.current_version() == version:
                    raise
                # a writer published (and pruned) versions meanwhile: load the new one

    def _load_version(self, path: Path) -> Snapshot:
        manifest_path = path / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as error:
            raise IndexStoreError(
                f"cannot read index manifest {manifest_path}: {error}; run `rag rebuild`"
            ) from None
        if manifest.get("format_version") != FORMAT_VERSION:
            raise IndexStoreError(
                f"{manifest_path}: index format {manifest.get('format_version')} is not "
                f"supported (expected {FORMAT_VERSION}); run `rag rebuild` to re-index the "
                "stored articles"
            )
        if (
            manifest.get("model_name") != self.model_name
            or manifest.get("dimension") != self.dimension
        ):
            raise IndexStoreError(
                f"the index in {self.directory} was built with model "
                f"{manifest.get('model_name')!r} "
                f"({manifest.get('dimension')} dimensions) but the settings ask for "
                f"{self.model_name!r} ({self.dimension} dimensions); use the same model or "
                "point RAG_INDEX_DIR at another directory"
            )
        built_with = manifest.get("embed_backend", "torch")
        if vector_space(built_with) != vector_space(self.backend):
            raise IndexStoreError(
                f"the index in {self.directory} holds {vector_space(built_with)} vectors from "
                f"the {built_with!r} embedding backend, which do not mix with the "
                f"{vector_space(self.backend)} vectors of {self.backend!r} that the settings "
                f"ask for; set RAG_EMBED_BACKEND={built_with}, or run `rag rebuild` to "
                f"re-embed the articles with {self.backend!r}"
            )
        parts: dict[str, Any] = {}
        for name, loader, file in (
            ("records", lambda p: RecordStore(p, read_only=True), "records.sqlite"),
            ("vectors", VectorIndex.load, "vectors.faiss"),
            ("lexical", LexicalIndex.load, "lexical"),
        ):
            target = path / file
            if not target.exists():
                raise IndexStoreError(f"index file missing: {target}; run `rag rebuild`")
            try:
                parts[name] = loader(target)
            except Exception as error:  # damaged files raise many kinds of errors
                raise IndexStoreError(
                    f"cannot read index file {target}: {error}; run `rag rebuild`"
                ) from None
        return Snapshot(path=path, manifest=manifest, **parts)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the write lock, against other threads and other processes."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._write_lock, open(self.directory / ".lock", "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    @contextmanager
    def writing(self) -> Iterator[Snapshot | None]:
        """Hold the write lock and yield the newest version to build on."""
        with self.locked():
            yield self.load()

    def stored_articles(self) -> list[Article]:
        """Every article of the newest version whose records are readable.

        Used to rebuild an index whose vectors, BM25 files or manifest are damaged;
        older versions are tried when the newest records file is damaged too.
        """
        versions = sorted(self.directory.glob("v[0-9]*"), reverse=True)
        for version in versions:
            try:
                records = RecordStore(version / "records.sqlite", read_only=True)
                if records.integrity_problems():
                    continue
                articles = [article for article, _ in records.articles()]
            except sqlite3.DatabaseError:
                continue
            records.close()
            return articles
        raise IndexStoreError(f"no readable article records in any version under {self.directory}")

    def commit(
        self,
        base: Snapshot | None,
        *,
        add: Sequence[NewArticle] = (),
        delete: Sequence[str] = (),
        settings_record: dict[str, Any] | None = None,
    ) -> Snapshot:
        """Write a new version = ``base`` + ``add`` - ``delete`` and make it current.

        Call inside :meth:`writing`. Only the new articles' vectors are needed: the
        others are copied from ``base``, never re-embedded.
        """
        self._remove_leftovers()
        staging = self.directory / f".tmp-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            records_path = staging / "records.sqlite"
            if base is None:
                records = RecordStore(records_path, read_only=False)
                vectors = VectorIndex.empty(self.dimension)
            else:
                records = base.records.copy_to(records_path)
                vectors = base.vectors.copy()
            vectors.remove(records.delete_articles(delete))
            for item in add:
                rowids = records.insert_article(item.article, item.chunks, item.sentence_vectors)
                vectors.add(item.vectors, np.asarray(rowids, dtype=np.int64))
            vectors = vectors.tuned()
            records.commit()
            stored = list(records.all_chunks())
            lexical = LexicalIndex.build([c.rowid for c in stored], [c.chunk.text for c in stored])
            generation = self._next_generation()
            manifest = {
                "format_version": FORMAT_VERSION,
                "generation": generation,
                "model_name": self.model_name,
                "dimension": self.dimension,
                "embed_backend": self.backend,
                "articles": records.count_articles(),
                "chunks": records.count_chunks(),
                "vector_index": vectors.description,
                "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "settings": settings_record or {},
            }
            records.close()
            vectors.save(staging / "vectors.faiss")
            lexical.save(staging / "lexical")
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
            _fsync_tree(staging)
            final = self.directory / f"v{generation:06d}"
            os.rename(staging, final)
            self._point_current_to(final.name)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._prune_old_versions()
        return self._load_version(final)

    def _next_generation(self) -> int:
        numbers = [int(p.name[1:]) for p in self.directory.glob("v[0-9]*") if p.name[1:].isdigit()]
        return max(numbers, default=0) + 1

    def _point_current_to(self, name: str) -> None:
        link = self.directory / f".current-{uuid.uuid4().hex}"
        os.symlink(name, link)
        os.replace(link, self.directory / _CURRENT)
        _fsync_dir(self.directory)

    def _remove_leftovers(self) -> None:
        for leftover in self.directory.glob(".tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for leftover in self.directory.glob(".current-*"):
            leftover.unlink(missing_ok=True)

    def _prune_old_versions(self) -> None:
        versions = sorted(p for p in self.directory.glob("v[0-9]*") if p.is_dir())
        current = self.current_version()
        for old in versions[:-KEEP_VERSIONS]:
            if old.name != current:
                shutil.rmtree(old, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        _fsync_dir(directory)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
