"""The index directory: atomic versions, integrity, damage and crash safety."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from index.store import IndexStore, IndexStoreError, NewArticle
from rag.articles import Article
from rag.chunking import Chunk

DIM = 4


def new_article(n: int) -> NewArticle:
    article = Article.create(f"Title {n}", f"Body number {n}. Second sentence {n}.")
    whole = (0, len(article.text))
    chunks = [Chunk(article.id, 0, *whole, article.text, (whole,))]
    vector = np.zeros((1, DIM), dtype=np.float32)
    vector[0, n % DIM] = 1.0
    return NewArticle(article, chunks, vector, [vector])


def test_commit_writes_a_version_and_swaps_current(tmp_path: Path) -> None:
    store = IndexStore(tmp_path, "m", DIM)
    assert store.load() is None
    with store.writing() as base:
        first = store.commit(base, add=[new_article(1), new_article(2)])
    assert store.current_version() == "v000001"
    assert first.check() == []
    assert first.manifest["articles"] == 2 and first.manifest["chunks"] == 2
    with store.writing() as base:
        second = store.commit(base, delete=[new_article(1).article.id], add=[new_article(3)])
    assert store.current_version() == "v000002"
    assert second.check() == []
    loaded = store.load()
    assert loaded is not None and loaded.check() == []
    assert {a.title for a, _ in loaded.records.articles()} == {"Title 2", "Title 3"}
    # the first version is untouched: readers holding it still see it whole
    assert {a.title for a, _ in first.records.articles()} == {"Title 1", "Title 2"}


def test_old_versions_are_pruned(tmp_path: Path) -> None:
    store = IndexStore(tmp_path, "m", DIM)
    for n in range(5):
        with store.writing() as base:
            store.commit(base, add=[new_article(n)])
    assert sorted(p.name for p in tmp_path.glob("v*")) == ["v000004", "v000005"]


def test_failed_commit_leaves_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = IndexStore(tmp_path, "m", DIM)
    with store.writing() as base:
        store.commit(base, add=[new_article(1)])

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("index.lexical.LexicalIndex.save", disk_full)
    with pytest.raises(OSError, match="No space"), store.writing() as base:
        store.commit(base, add=[new_article(2)])
    loaded = store.load()
    assert loaded is not None and loaded.check() == []
    assert loaded.manifest["articles"] == 1
    assert not list(tmp_path.glob(".tmp-*"))


def test_leftover_staging_from_a_crash_is_ignored_and_cleaned(tmp_path: Path) -> None:
    store = IndexStore(tmp_path, "m", DIM)
    with store.writing() as base:
        store.commit(base, add=[new_article(1)])
    (tmp_path / ".tmp-crashed").mkdir()
    (tmp_path / ".tmp-crashed" / "records.sqlite").write_bytes(b"half written")
    assert store.load() is not None
    with store.writing() as base:
        store.commit(base, add=[new_article(2)])
    assert not (tmp_path / ".tmp-crashed").exists()


def test_damaged_files_give_errors_naming_the_file(tmp_path: Path) -> None:
    store = IndexStore(tmp_path, "m", DIM)
    with store.writing() as base:
        snapshot = store.commit(base, add=[new_article(1)])
    (snapshot.path / "vectors.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexStoreError, match=r"vectors\.faiss"):
        store.load()
    os.remove(snapshot.path / "vectors.faiss")
    with pytest.raises(IndexStoreError, match=r"index file missing: .*vectors\.faiss"):
        store.load()
    (snapshot.path / "manifest.json").write_text("{")
    with pytest.raises(IndexStoreError, match="manifest"):
        store.load()


def test_other_model_or_dimension_is_refused(tmp_path: Path) -> None:
    with IndexStore(tmp_path, "m", DIM).writing() as base:
        IndexStore(tmp_path, "m", DIM).commit(base, add=[new_article(1)])
    with pytest.raises(IndexStoreError, match="built with model 'm'"):
        IndexStore(tmp_path, "other", DIM).load()
    with pytest.raises(IndexStoreError, match="4 dimensions"):
        IndexStore(tmp_path, "m", 8).load()


def test_vector_search_and_similarity(tmp_path: Path) -> None:
    store = IndexStore(tmp_path, "m", DIM)
    with store.writing() as base:
        snapshot = store.commit(base, add=[new_article(n) for n in range(4)])
    query = np.array([0, 1, 0, 0], dtype=np.float32)
    scores, ids = snapshot.vectors.search(query, 2)
    assert scores[0] == pytest.approx(1.0)
    best = snapshot.records.chunks([int(ids[0])])[int(ids[0])]
    assert best.chunk.text.startswith("Body number 1.")
    _, only = snapshot.vectors.search(query, 4, allowed={int(ids[-1])})
    assert only.tolist() == [int(ids[-1])]
    assert snapshot.vectors.similarity(query, ids).tolist() == pytest.approx(scores.tolist())
