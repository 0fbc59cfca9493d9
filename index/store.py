"""The embedded store: SQLite records as the truth, FAISS and BM25 segments derived.

Layout::

    <index_dir>/
        current -> store-000002        (symlink, replaced atomically by a rebuild)
        store-000002/
            records.sqlite (-wal, -shm)  articles, chunks, vectors, change log (WAL mode)
            segments/CURRENT             names the base segment in use
            segments/seg-<seq>-<id>/     FAISS vectors + BM25 term counts up to change <seq>
        .lock  .merge-lock              (inter-process write and merge locks)

A write is one SQLite transaction, in place: its cost is what it writes. Each process
keeps a view: the base segment (memory-mapped) plus the chunks added after it (replayed
from the records' change log, so a restart reads only that tail) minus those deleted.
Once the tail passes :class:`MergePolicy`'s threshold, a merge writes a new base segment
in the background and swaps it in atomically. SIGKILL at any moment leaves committed
transactions, and nothing else, in the records; segments are rebuilt from them at need.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from index.protocol import IndexStoreError, NewArticle, RowIds, StoreIdentity, Vectors
from index.records import RecordStore, StoredChunk, read_articles
from index.segments import (
    BaseSegment,
    Delta,
    SegmentDirectory,
    SegmentView,
    fsync_dir,
    fsync_file,
)
from records import Article, ArticleFilter

FORMAT_VERSION = 4
"""4: article texts compressed, chunk vectors int8, sentence vectors 4-bit
(:mod:`index.records`).
3: records in place (WAL) with a change log; search segments derived from them; read as
it is (its rows decode either way) and marked 4 by its next write.
2 (and earlier): a complete copy of the index per write (``v000007/``), read only to
upgrade it with ``rag rebuild``."""
READABLE_FORMATS = (3, FORMAT_VERSION)
RESCORED_CANDIDATES = 2
"""Over an IVF base, dense search re-scores this many times ``k`` candidates with the
records' vectors. At a million chunks (``bench/scale.py``, 16 lists probed) the 8-bit
lists alone found .94 of the exact top 10 for queries about topics outside the index,
re-scored .96 (as float16 lists did, at 2.0 ms against their 3.2 ms)."""
KEEP_STORES = 2
_CURRENT = "current"
_RECORDS = "records.sqlite"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MergePolicy:
    """When the chunks added or deleted since the base segment are folded into a new one:
    once they number at least ``min_changes`` and ``ratio`` times the base."""

    min_changes: int = 2_000
    ratio: float = 0.1
    background: bool = True
    """Merge in a background thread of the writing process (else inside the write)."""

    def due(self, view: SegmentView) -> bool:
        changes = view.delta_size + len(view.deleted)
        return changes >= max(self.min_changes, self.ratio * view.base.size)


class EmbeddedView:
    """A consistent view of the embedded store at one change number."""

    def __init__(
        self, name: str, segments: SegmentView, records: RecordStore, counts: tuple[int, int]
    ) -> None:
        self.name = name
        self.segments = segments
        self.records = records
        self._counts = counts

    @property
    def generation(self) -> int:
        return self.segments.seq

    @property
    def articles_count(self) -> int:
        return self._counts[0]

    @property
    def chunks_count(self) -> int:
        return self._counts[1]

    def dense_search(
        self, query: Vectors, k: int, allowed: Collection[int] | None = None
    ) -> tuple[Vectors, RowIds]:
        """Top-``k`` by cosine. Over an IVF base, whose 8-bit lists only approximate the
        vectors, :data:`RESCORED_CANDIDATES` times ``k`` are found and re-scored with the
        records' vectors (near ties are no longer decided by the rounding)."""
        if not self.segments.base.vectors.is_ivf:
            return self.segments.dense_search(query, k, allowed)
        approximate, rowids = self.segments.dense_search(query, RESCORED_CANDIDATES * k, allowed)
        exact, found = self._record_scores(query, rowids)
        scores = np.where(found, exact, approximate)
        order = np.argsort(-scores, kind="stable")[:k]
        return scores[order], rowids[order]

    def similarity(self, query: Vectors, rowids: RowIds) -> Vectors:
        """Cosine of the query to these chunks' vectors (the records' vectors where the
        base is IVF)."""
        if not self.segments.base.vectors.is_ivf:
            return self.segments.similarity(query, rowids)
        scores, found = self._record_scores(query, rowids)
        if not found.all():
            scores[~found] = self.segments.similarity(query, rowids[~found])
        return scores

    def _record_scores(
        self, query: Vectors, rowids: RowIds
    ) -> tuple[Vectors, npt.NDArray[np.bool_]]:
        """The query's dot product with the records' vectors of ``rowids``, and which
        the records still hold (a chunk deleted after this view's cut is not: 0 there)."""
        stored = self.records.chunk_vectors(rowids.tolist())
        found = np.fromiter((r in stored for r in rowids.tolist()), dtype=bool, count=len(rowids))
        scores = np.zeros(len(rowids), dtype=np.float32)
        if found.any():
            vectors = np.stack([stored[r] for r in rowids[found].tolist()])
            scores[found] = vectors @ query.astype(np.float32)
        return scores, found

    def lexical_scores(
        self, query: str, allowed: Collection[int] | None = None
    ) -> tuple[RowIds, Vectors]:
        return self.segments.lexical_scores(query, allowed)

    def chunks(self, rowids: Sequence[int]) -> dict[int, StoredChunk]:
        return self.records.chunks(rowids)

    def all_chunks(self) -> Iterable[StoredChunk]:
        return self.records.all_chunks()

    def sentence_vectors(self, rowids: Sequence[int]) -> dict[int, Vectors]:
        return self.records.sentence_vectors(rowids)

    def chunk_rowids(self, where: ArticleFilter) -> set[int]:
        return self.records.chunk_rowids(where)

    def article(self, article_id: str) -> Article | None:
        return self.records.article(article_id)

    def articles(self, *, offset: int = 0, limit: int = -1) -> list[tuple[Article, int]]:
        return self.records.articles(offset=offset, limit=limit)

    def description(self) -> dict[str, Any]:
        base = self.segments.base
        return {
            "store": "embedded",
            "format_version": FORMAT_VERSION,
            "version": self.name,
            "generation": self.generation,
            "articles": self.articles_count,
            "chunks": self.chunks_count,
            "base_segment": {"chunks": base.size, "seq": base.seq, **base.vectors.description},
            "delta_chunks": self.segments.delta_size,
            "deleted_since_base": len(self.segments.deleted),
        }


class EmbeddedWriter:
    """Changes to one records file, inside a write transaction."""

    def __init__(
        self, records: RecordStore, on_first_commit: Callable[[], RecordStore] | None = None
    ) -> None:
        self.records = records
        self._on_first_commit = on_first_commit
        self._meta = records.meta()
        self.seq = int(self._meta.get("seq", 0)) + 1
        self._articles = int(self._meta.get("articles", 0))
        self._chunks = int(self._meta.get("chunks", 0))
        self._dirty = False
        records.begin_write()

    def article(self, article_id: str) -> Article | None:
        return self.records.article(article_id)

    def article_by_hash(self, digest: str) -> Article | None:
        return self.records.article_by_hash(digest)

    def add(self, items: Sequence[NewArticle]) -> None:
        for item in items:
            self.records.insert_article(
                item.article, item.chunks, item.vectors, item.sentence_vectors, self.seq
            )
            self._articles += 1
            self._chunks += len(item.chunks)
            self._dirty = True

    def delete(self, article_ids: Collection[str]) -> int:
        present = [a for a in article_ids if self.records.article(a) is not None]
        removed = self.records.delete_articles(present, self.seq)
        self._articles -= len(present)
        self._chunks -= len(removed)
        self._dirty = self._dirty or bool(present)
        return len(removed)

    def commit(self) -> None:
        """Commit what was written so far as change ``seq``, and start the next one."""
        self._finish()
        self.records.begin_write()

    def _finish(self) -> None:
        if self._dirty:
            self.records.set_meta(
                {
                    "format_version": FORMAT_VERSION,
                    "seq": self.seq,
                    "articles": self._articles,
                    "chunks": self._chunks,
                }
            )
            self.records.commit()
            self.seq += 1
            self._dirty = False
            if self._on_first_commit is not None:  # a new index becomes current
                self.records = self._on_first_commit()
                self._on_first_commit = None
        else:
            self.records.rollback()


@dataclass(frozen=True)
class _Loaded:
    """One process's state of one store folder: its connections and newest view."""

    name: str
    reader: RecordStore
    replay: RecordStore
    segments: SegmentDirectory
    view: EmbeddedView


class EmbeddedStore:
    """The embedded store in one index directory, shared by threads and processes."""

    def __init__(
        self,
        directory: Path,
        identity: StoreIdentity,
        policy: MergePolicy | None = None,
        settings_record: dict[str, object] | None = None,
    ) -> None:
        self.directory = directory
        self.identity = identity
        self.policy = policy or MergePolicy()
        self._write_lock = threading.Lock()
        self._merge_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._merging: threading.Thread | None = None
        self._writer_records: dict[str, RecordStore] = {}
        self.settings_record = settings_record or {}
        """Stored with a new index (how it was chunked), shown by ``rag check``."""

    # -- reading ----------------------------------------------------------------
    def current_name(self) -> str | None:
        """The store folder ``current`` points to, or ``None`` if there is no index."""
        try:
            return os.readlink(self.directory / _CURRENT)
        except FileNotFoundError:
            return None

    def view(self) -> EmbeddedView | None:
        """The newest view: replays changes committed since the last call (by any
        process) onto this process's segments; ``None`` when there is no index."""
        name = self.current_name()
        if name is None:
            return None
        loaded = self._loaded
        if loaded is not None and loaded.name == name and not self._stale(loaded):
            return loaded.view
        with self._reload_lock:
            loaded = self._loaded
            if loaded is None or loaded.name != name:
                loaded = self._load(name)
            elif self._stale(loaded):
                loaded = self._catch_up(loaded)
            self._loaded = loaded
            return loaded.view

    def _stale(self, loaded: _Loaded) -> bool:
        base = loaded.view.segments.base
        return loaded.reader.seq() != loaded.view.generation or loaded.segments.current_name() != (
            base.name or None
        )

    def _load(self, name: str) -> _Loaded:
        path = self.directory / name
        records_path = path / _RECORDS
        if (path / "manifest.json").exists():
            raise IndexStoreError(
                f"the index in {self.directory} is in an earlier format (a full copy per "
                f"write, {name}/); run `rag rebuild` to upgrade it: its articles are kept "
                "and re-embedded"
            )
        if not records_path.is_file():
            raise IndexStoreError(f"index file missing: {records_path}; run `rag rebuild`")
        try:
            reader = RecordStore(records_path, read_only=True)
            replay = RecordStore(records_path, read_only=True)
            meta = reader.meta()
        except sqlite3.DatabaseError as error:
            raise IndexStoreError(
                f"cannot read index file {records_path}: {error}; run `rag rebuild`"
            ) from None
        self._check_identity(meta, records_path)
        segments = SegmentDirectory(path / "segments", self.identity.dimension)
        empty = SegmentView.of(
            0,
            BaseSegment.empty(self.identity.dimension),
            Delta(self.identity.dimension),
            np.zeros(0, np.int64),
        )
        loaded = _Loaded(name, reader, replay, segments, EmbeddedView(name, empty, reader, (0, 0)))
        return self._catch_up(loaded)

    def _check_identity(self, meta: dict[str, Any], where: Path) -> None:
        if meta.get("format_version") not in READABLE_FORMATS:
            raise IndexStoreError(
                f"{where}: index format {meta.get('format_version')} is not supported "
                f"(expected {FORMAT_VERSION}); run `rag rebuild`"
            )
        wanted = self.identity
        if meta.get("model_name") != wanted.model_name or meta.get("dimension") != wanted.dimension:
            raise IndexStoreError(
                f"the index in {self.directory} was built with model "
                f"{meta.get('model_name')!r} ({meta.get('dimension')} dimensions) but the "
                f"settings ask for {wanted.model_name!r} ({wanted.dimension} dimensions); "
                "use the same model or point RAG_INDEX_DIR at another directory"
            )
        if meta.get("vector_space") != wanted.vector_space:
            built_with = meta.get("embed_backend")
            raise IndexStoreError(
                f"the index in {self.directory} holds {meta.get('vector_space')} vectors from "
                f"the {built_with!r} embedding backend, which do not mix with the "
                f"{wanted.vector_space} vectors of {wanted.embed_backend!r} that the settings "
                f"ask for; set RAG_EMBED_BACKEND={built_with}, or run `rag rebuild` to "
                f"re-embed the articles with {wanted.embed_backend!r}"
            )

    def _catch_up(self, loaded: _Loaded) -> _Loaded:
        """Bring a loaded store to the newest commit: a new base segment if a merge
        published one, then the change log's tail after what the segments hold."""
        current = loaded.view.segments
        base_name = loaded.segments.current_name()
        if base_name != (current.base.name or None):
            try:
                base = loaded.segments.load(base_name)
            except ValueError as error:
                raise IndexStoreError(
                    f"cannot read index file {error}; run `rag rebuild`"
                ) from None
            changes = loaded.replay.changes_since(base.seq)
            delta = Delta(self.identity.dimension)
            if changes.added:
                delta.append(changes.added, changes.vectors, changes.texts)
            segments = SegmentView.of(changes.seq, base, delta, changes.deleted)
        else:  # the tail only: what it costs depends on the change, not on the index
            changes = loaded.replay.changes_since(current.seq)
            if changes.added:
                current.delta.append(changes.added, changes.vectors, changes.texts)
            segments = current.advanced(changes.seq, changes.deleted)
        view = EmbeddedView(
            loaded.name, segments, loaded.reader, (changes.articles, changes.chunks)
        )
        return dataclasses.replace(loaded, view=view)

    # -- writing ----------------------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the write lock, against other threads and other processes."""
        with self._write_lock, _flock(self.directory / ".lock"):
            yield

    @contextmanager
    def writing(self) -> Iterator[EmbeddedWriter]:
        """Write in place: one transaction per :meth:`EmbeddedWriter.commit` and at the
        end of the block; an exception rolls back what was not committed. Creates the
        index if there is none."""
        with self.locked():
            name = self.current_name()
            staging = None if name is not None else self._new_store_staging()
            if staging is None:
                writer = EmbeddedWriter(self._writer(str(name)))
            else:  # a new index, published by its first commit (none: no index at all)
                records = RecordStore(staging / _RECORDS, read_only=False)

                def publish() -> RecordStore:
                    records.close()
                    return self._writer(self._publish_store(staging))

                writer = EmbeddedWriter(records, publish)
            try:
                yield writer
                writer._finish()
            except BaseException:
                writer.records.rollback()
                raise
            finally:
                if staging is not None and staging.exists():
                    writer.records.close()
                    shutil.rmtree(staging, ignore_errors=True)
        self._after_write()

    def _writer(self, name: str) -> RecordStore:
        if name not in self._writer_records:
            path = self.directory / name / _RECORDS
            if (self.directory / name / "manifest.json").exists():
                self._load(name)  # raises the upgrade message
            records = RecordStore(path, read_only=False)
            self._check_identity(records.meta(), path)
            self._writer_records[name] = records
        return self._writer_records[name]

    def _new_store_staging(self) -> Path:
        """A new, empty store folder under a temporary name."""
        staging = self.directory / f".tmp-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        records = RecordStore(staging / _RECORDS, read_only=False)
        records.begin_write()
        records.set_meta(
            {
                "format_version": FORMAT_VERSION,
                "model_name": self.identity.model_name,
                "dimension": self.identity.dimension,
                "embed_backend": self.identity.embed_backend,
                "vector_space": self.identity.vector_space,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "settings": self.settings_record,
                "seq": 0,
                "articles": 0,
                "chunks": 0,
            }
        )
        records.commit()
        records.close()
        return staging

    def _publish_store(self, staging: Path) -> str:
        """Give a complete store folder its final name and make it current."""
        numbers = [
            int(p.name.rsplit("-", 1)[1])
            for p in self.directory.glob("store-*")
            if p.name.rsplit("-", 1)[1].isdigit()
        ]
        name = f"store-{max(numbers, default=0) + 1:06d}"
        for path in [staging, *staging.iterdir()]:
            if path.is_file():
                fsync_file(path)
        fsync_dir(staging)
        os.rename(staging, self.directory / name)
        self._point_current_to(name)
        return name

    def _point_current_to(self, name: str) -> None:
        link = self.directory / f".current-{uuid.uuid4().hex}"
        os.symlink(name, link)
        os.replace(link, self.directory / _CURRENT)
        fsync_dir(self.directory)

    def _after_write(self) -> None:
        view = self.view()
        if view is None or not self.policy.due(view.segments):
            return
        if not self.policy.background:
            self.merge()
            return
        with self._merge_lock:
            if self._merging is not None and self._merging.is_alive():
                return
            self._merging = threading.Thread(target=self._merge_quietly, daemon=True)
            self._merging.start()

    def _merge_quietly(self) -> None:
        try:
            self.merge()
        except Exception:  # a failed merge loses nothing: the records are the truth
            log.exception("background merge of %s failed", self.directory)

    def merge(self, force: bool = False) -> bool:
        """Fold the changes since the base segment into a new base, if the policy says
        it is due (or ``force``); ``False`` when there was nothing to do or another
        process is merging. Writes go on meanwhile."""
        with self._merge_lock, _flock(self.directory / ".merge-lock", blocking=False) as held:
            if not held:
                return False
            view = self.view()
            if view is None:
                return False
            segments = view.segments
            if not segments.delta_size and not len(segments.deleted):
                return False
            if not force and not self.policy.due(segments):
                return False
            loaded = self._loaded
            assert loaded is not None
            previous = view.segments.base
            published = loaded.segments.publish(segments)
            keep = {published.name} | ({previous.name} if previous.name else set())
            loaded.segments.prune(keep)
            if previous.seq:  # other processes may still replay from the previous base
                with self.locked():
                    records = self._writer(view.name)
                    records.begin_write()
                    records.forget_deletions(previous.seq)
                    records.commit()
            return True

    def wait_for_merge(self) -> None:
        """Block until a background merge started by this process has finished."""
        thread = self._merging
        if thread is not None:
            thread.join()

    # -- whole-index operations -----------------------------------------------------
    def check(self) -> list[str]:
        """Consistency problems between the records and the segments (empty when sound)."""
        with self.locked():
            view = self.view()
            if view is None:
                return ["no index"]
            records = view.records
            problems = records.integrity_problems()
            stored = records.chunk_rowid_list()
            if view.chunks_count != len(stored):
                problems.append(
                    f"the change log counts {view.chunks_count} chunks, the records {len(stored)}"
                )
            if view.articles_count != records.count_articles():
                problems.append("the change log's article count differs from the records")
            live = view.segments.live_rowids()
            if not np.array_equal(live, stored):
                problems.append(
                    f"the search segments hold {len(live)} chunks, the records {len(stored)}"
                    f" ({len(np.setxor1d(live, stored))} differ)"
                )
            if view.segments.size != len(stored):
                problems.append(f"BM25 counts {view.segments.size} live documents")
            mismatched = records.mismatched_sentence_vectors(self.identity.dimension)
            if mismatched:
                problems.append(f"{mismatched} chunks lack a vector for each of their sentences")
            return problems

    def stored_articles(self) -> list[Article]:
        """Every article of the newest readable records (this format or an earlier one),
        to rebuild from; older copies are tried when the newest is damaged."""
        candidates = sorted(
            [
                *self.directory.glob("store-*/" + _RECORDS),
                *self.directory.glob("v[0-9]*/records.sqlite"),
            ],
            key=lambda p: (p.parent.name == self.current_name(), p.stat().st_mtime),
            reverse=True,
        )
        for path in candidates:
            try:
                return read_articles(path)
            except sqlite3.DatabaseError:
                continue
        if not candidates:
            return []
        raise IndexStoreError(f"no readable article records in any version under {self.directory}")

    @contextmanager
    def rebuilding(self) -> Iterator[EmbeddedWriter]:
        """Write a complete new store folder; when the block succeeds it replaces the
        current one atomically (the old one is kept until the next rebuild)."""
        with self.locked():
            staging = self._new_store_staging()
            records = RecordStore(staging / _RECORDS, read_only=False)
            writer = EmbeddedWriter(records)
            try:
                yield writer
                writer._finish()
            except BaseException:
                records.rollback()
                shutil.rmtree(staging, ignore_errors=True)
                raise
            finally:
                records.close()
            self._publish_store(staging)
            self._prune_stores()
        self._after_write()

    def _prune_stores(self) -> None:
        current = self.current_name()
        folders = sorted(
            [*self.directory.glob("store-*"), *self.directory.glob("v[0-9]*")],
            key=lambda p: p.stat().st_mtime,
        )
        for old in folders[:-KEEP_STORES]:
            if old.name != current:
                self._writer_records.pop(old.name, None)
                shutil.rmtree(old, ignore_errors=True)
        for leftover in self.directory.glob(".tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for leftover in self.directory.glob(".current-*"):
            leftover.unlink(missing_ok=True)

    def close(self) -> None:
        """Finish merging (a background merge, then one still due) and close this
        process's write connections."""
        self.wait_for_merge()
        view = self.view() if self.current_name() is not None else None
        if view is not None and self.policy.due(view.segments):
            self.merge()
        for records in self._writer_records.values():
            records.close()
        self._writer_records.clear()
        loaded, self._loaded = self._loaded, None
        if loaded is not None:
            loaded.reader.close()
            loaded.replay.close()


@contextmanager
def _flock(path: Path, blocking: bool = True) -> Iterator[bool]:
    """An exclusive ``flock`` on ``path``; yields whether it is held (only ``False`` when
    not ``blocking`` and another holder has it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle: IO[str]
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
