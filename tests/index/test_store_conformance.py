"""One suite, run against every store (``store`` is parametrised: embedded, postgres):
transactional writes and generations, dedupe by content hash, deletes, filters, the
records read back, failed blocks, identity checks and rebuilds; then the two stores side
by side: the same data gives the same dense and lexical results."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from index.postgres import PostgresStore
from index.protocol import IndexStoreError, NewArticle, Store, StoreIdentity, StoreView
from index.store import EmbeddedStore, MergePolicy
from records import ArticleFilter

MakeArticle = Callable[..., NewArticle]
MakeStore = Callable[..., Store]


def newest(store: Store) -> StoreView:
    view = store.view()
    assert view is not None
    return view


def stored_ids(store: Store) -> list[str]:
    view = store.view()
    return [] if view is None else sorted(a.id for a, _ in view.articles())


def articles_of(view: StoreView, rowids: set[int] | list[int]) -> set[str]:
    return {stored.chunk.article_id for stored in view.chunks(sorted(rowids)).values()}


def test_writes_are_transactions_seen_by_the_next_view(
    store: Store, make_article: MakeArticle
) -> None:
    assert store.view() is None
    with store.writing() as writer:
        writer.add([make_article(1), make_article(2)])
    first = newest(store)
    assert (first.generation, first.articles_count, first.chunks_count) == (1, 2, 4)
    with store.writing() as writer:
        assert writer.delete(["a00001"]) == 2
        writer.add([make_article(3)])
        writer.commit()
        writer.add([make_article(4)])
    second = newest(store)
    assert second.generation == 3, "one generation per committed transaction"
    assert (second.articles_count, second.chunks_count) == (3, 6)
    assert stored_ids(store) == ["a00002", "a00003", "a00004"]
    assert (first.articles_count, first.chunks_count) == (2, 4), "a view's counts stay"
    assert store.check() == []


def test_a_block_that_changes_nothing_writes_nothing(
    store: Store, make_article: MakeArticle
) -> None:
    with store.writing() as writer:
        assert writer.delete(["a00001"]) == 0
    assert store.view() is None, "no index until something is written"
    with store.writing() as writer:
        writer.add([make_article(1)])
    with store.writing() as writer:
        assert writer.delete(["nothing"]) == 0
    assert newest(store).generation == 1


def test_a_writer_sees_its_own_articles_and_finds_them_by_hash(
    store: Store, make_article: MakeArticle
) -> None:
    item = make_article(7)
    with store.writing() as writer:
        writer.add([item])
        assert writer.article("a00007") == item.article
        found = writer.article_by_hash(item.article.content_hash)
        assert found is not None and found.id == "a00007"
        assert writer.article_by_hash("0" * 64) is None
    view = newest(store)
    assert view.article("a00007") == item.article
    assert view.article("a99999") is None


def test_two_writers_adding_the_same_article_store_it_once(
    make_store: MakeStore, make_article: MakeArticle
) -> None:
    """Two handles (as two processes would have) add the same article at once, each
    first asking for it by content hash as the indexer does: it is stored once."""
    stores = [make_store(), make_store()]
    item = make_article(5, chunks=3)
    start = threading.Barrier(2)
    added: list[bool] = []

    def add(store: Store) -> None:
        start.wait()
        with store.writing() as writer:
            if writer.article_by_hash(item.article.content_hash) is None:
                writer.add([item])
                added.append(True)

    threads = [threading.Thread(target=add, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert added == [True]
    view = newest(stores[0])
    assert (view.articles_count, view.chunks_count) == (1, 3)
    assert stores[1].check() == []


def test_a_deleted_article_leaves_every_search(store: Store, make_article: MakeArticle) -> None:
    with store.writing() as writer:
        writer.add([make_article(n, chunks=3) for n in range(10)])
    before = newest(store)
    gone = before.chunk_rowids(ArticleFilter(article_ids=("a00003",)))
    assert len(gone) == 3
    with store.writing() as writer:
        assert writer.delete(["a00003", "missing"]) == 3
    view = newest(store)
    assert (view.articles_count, view.chunks_count) == (9, 27)
    assert view.chunk_rowids(ArticleFilter(article_ids=("a00003",))) == set()
    assert view.chunks(sorted(gone)) == {} and view.sentence_vectors(sorted(gone)) == {}
    query = make_article(3, chunks=3).vectors[0]
    _, dense = view.dense_search(query, 30)
    assert len(dense) == 27 and not gone & set(dense.tolist())
    rowids, _ = view.lexical_scores("number 3 harbour port ferry aid")
    assert len(rowids) == 27 and not gone & set(rowids.tolist())
    assert view.article("a00003") is None
    assert store.check() == []


def test_filters_select_the_chunks_of_matching_articles(
    store: Store, make_article: MakeArticle
) -> None:
    with store.writing() as writer:  # published 2024-01-(n+1), odd n at noon; source by parity
        writer.add([make_article(n, source="even" if n % 2 == 0 else "odd") for n in range(8)])
    view = newest(store)

    def selected(where: ArticleFilter) -> set[str]:
        rowids = view.chunk_rowids(where)
        return articles_of(view, rowids) if rowids else set()

    names = {n: f"a{n:05d}" for n in range(8)}
    assert selected(ArticleFilter()) == set(names.values())
    assert selected(ArticleFilter(source="even")) == {names[n] for n in (0, 2, 4, 6)}
    assert selected(ArticleFilter(source="none")) == set()
    assert selected(ArticleFilter(published_after="2024-01-03", published_before="2024-01-05")) == {
        names[2],
        names[3],
        names[4],
    }
    on_or_before_the_4th = selected(ArticleFilter(published_before="2024-01-04"))
    assert on_or_before_the_4th == {names[n] for n in range(4)}  # a00003: the 4th, at noon
    assert selected(ArticleFilter(article_ids=(names[1], names[6], "missing"))) == {
        names[1],
        names[6],
    }
    assert selected(ArticleFilter(article_ids=())) == set()
    assert selected(ArticleFilter(excluded_article_ids=())) == set(names.values())
    assert selected(ArticleFilter(source="odd", excluded_article_ids=(names[1],))) == {
        names[3],
        names[5],
        names[7],
    }
    allowed = view.chunk_rowids(ArticleFilter(source="odd"))
    _, dense = view.dense_search(make_article(0).vectors[0], 20, allowed)
    assert set(dense.tolist()) == allowed
    rowids, _ = view.lexical_scores("number", allowed)
    assert set(rowids.tolist()) == allowed
    assert view.dense_search(make_article(0).vectors[0], 5, set())[1].size == 0


def test_records_read_back_as_written(store: Store, make_article: MakeArticle) -> None:
    items = [make_article(n, chunks=3) for n in range(4)]
    with store.writing() as writer:
        writer.add(items)
    view = newest(store)
    chunks = list(view.all_chunks())
    assert [s.rowid for s in chunks] == sorted(s.rowid for s in chunks)
    by_passage = {s.chunk.passage_id: s for s in chunks}
    vectors = view.sentence_vectors([s.rowid for s in chunks])
    for item in items:
        for chunk, sentences in zip(item.chunks, item.sentence_vectors, strict=True):
            stored = by_passage[chunk.passage_id]
            assert stored.chunk == chunk
            assert item.article.text[chunk.start : chunk.end] == stored.chunk.text
            step = np.abs(sentences).max(axis=1, keepdims=True) / 8  # 4-bit, a scale each
            assert np.all(np.abs(vectors[stored.rowid] - sentences) <= step / 2 + 1e-7)
    assert view.chunks([by_passage["a00002:1"].rowid]) == {
        by_passage["a00002:1"].rowid: by_passage["a00002:1"]
    }
    listed = view.articles()
    assert [(a.id, n) for a, n in listed] == [(f"a{n:05d}", 3) for n in range(4)]
    assert [a.id for a, _ in view.articles(offset=1, limit=2)] == ["a00001", "a00002"]
    assert [a.id for a in store.stored_articles()] == [f"a{n:05d}" for n in range(4)]
    assert listed[0][0].content_hash == items[0].article.content_hash
    assert view.description()["chunks"] == 12


def test_a_failed_block_keeps_only_what_it_committed(
    store: Store, make_article: MakeArticle
) -> None:
    with pytest.raises(RuntimeError), store.writing() as writer:
        writer.add([make_article(1)])
        writer.commit()
        writer.add([make_article(2)])
        raise RuntimeError("the embedder failed")
    assert stored_ids(store) == ["a00001"]
    assert newest(store).generation == 1
    with store.writing() as writer:  # the store is still writable
        writer.add([make_article(2)])
    assert stored_ids(store) == ["a00001", "a00002"] and store.check() == []
    rowids, _ = newest(store).lexical_scores("number 2")
    assert len(rowids) == 4, "statistics count the committed chunks only"


def test_another_model_or_vector_space_is_refused(
    make_store: MakeStore, identity: StoreIdentity, make_article: MakeArticle
) -> None:
    with make_store().writing() as writer:
        writer.add([make_article(1)])
    for other, message in (
        (dataclasses.replace(identity, model_name="other"), "built with model 'm'"),
        (dataclasses.replace(identity, dimension=identity.dimension + 1), "8 dimensions"),
        (StoreIdentity("m", identity.dimension, "onnx-int8", "int8"), "RAG_EMBED_BACKEND=torch"),
    ):
        with pytest.raises(IndexStoreError, match=message):
            make_store(other).view()
        with (
            pytest.raises(IndexStoreError, match=message),
            make_store(other).writing() as writer,
        ):
            writer.add([make_article(2)])
    onnx = dataclasses.replace(identity, embed_backend="onnx")  # float32 backends mix
    assert newest(make_store(onnx)).articles_count == 1


def test_rebuilding_replaces_everything_or_nothing(store: Store, make_article: MakeArticle) -> None:
    with store.writing() as writer:
        writer.add([make_article(n) for n in range(3)])
    with pytest.raises(RuntimeError), store.rebuilding() as writer:
        writer.add([make_article(10)])
        writer.commit()
        raise RuntimeError("interrupted")
    assert stored_ids(store) == ["a00000", "a00001", "a00002"]
    generation = newest(store).generation
    with store.rebuilding() as writer:
        assert [a.id for a in store.stored_articles()] == ["a00000", "a00001", "a00002"]
        assert writer.article("a00000") is None, "a rebuild starts from nothing"
        writer.add([make_article(4)])
        writer.commit()
        writer.add([make_article(5)])
    view = newest(store)
    assert stored_ids(store) == ["a00004", "a00005"]
    assert view.generation > generation
    assert (view.articles_count, view.chunks_count) == (2, 4)
    assert len(view.lexical_scores("number")[0]) == 4
    assert store.check() == []


def test_a_rebuild_for_another_model_replaces_the_vectors(
    make_store: MakeStore, identity: StoreIdentity, make_article: MakeArticle
) -> None:
    with make_store().writing() as writer:
        writer.add([make_article(1)])
    wider = dataclasses.replace(identity, model_name="wider", dimension=12)
    rebuilt = make_store(wider)
    item = make_article(2)
    vectors = np.pad(item.vectors, ((0, 0), (0, 4)))
    sentences = [np.pad(s, ((0, 0), (0, 4))) for s in item.sentence_vectors]
    with rebuilt.rebuilding() as writer:
        writer.add([dataclasses.replace(item, vectors=vectors, sentence_vectors=sentences)])
    view = newest(rebuilt)
    _, found = view.dense_search(vectors[0], 1)
    assert articles_of(view, found.tolist()) == {"a00002"}
    assert rebuilt.check() == []
    with pytest.raises(IndexStoreError, match="built with model 'wider'"):
        make_store().view()


# -- the two stores side by side ------------------------------------------------------
def by_passage(view: StoreView, rowids: np.ndarray, scores: np.ndarray) -> list[tuple[str, float]]:
    chunks = view.chunks(rowids.tolist())
    return [
        (chunks[int(r)].chunk.passage_id, float(s)) for r, s in zip(rowids, scores, strict=True)
    ]


def rowid_of(view: StoreView, passage_ids: list[str]) -> np.ndarray:
    where = {s.chunk.passage_id: s.rowid for s in view.all_chunks()}
    return np.asarray([where[p] for p in passage_ids], dtype=np.int64)


def test_both_stores_give_the_same_results_on_the_same_data(
    tmp_path: Path, database_url: str, identity: StoreIdentity, make_article: MakeArticle
) -> None:
    embedded = EmbeddedStore(tmp_path / "index", identity, MergePolicy(min_changes=10**9))
    postgres = PostgresStore(database_url, identity)
    try:
        for store in (embedded, postgres):
            with store.writing() as writer:
                writer.add([make_article(n, chunks=3) for n in range(60)])
            with store.writing() as writer:
                writer.add([make_article(n, chunks=3) for n in range(60, 90)])
                writer.delete([f"a{n:05d}" for n in (5, 6, 61, 62, 89)])
        assert embedded.merge(force=True)  # the embedded store's base segment and a delta
        with embedded.writing() as writer, postgres.writing() as other:
            for each in (writer, other):
                each.add([make_article(n, chunks=2) for n in range(90, 95)])
                each.delete(["a00007"])
        views = [newest(embedded), newest(postgres)]
        assert [v.chunks_count for v in views] == [262, 262]
        rng = np.random.default_rng(99)
        for _ in range(5):
            query = rng.standard_normal(identity.dimension).astype(np.float32)
            query /= np.linalg.norm(query)
            dense = [by_passage(v, *v.dense_search(query, 15)[::-1]) for v in views]
            assert [p for p, _ in dense[0]] == [p for p, _ in dense[1]]
            np.testing.assert_allclose(
                [s for _, s in dense[0]], [s for _, s in dense[1]], atol=1e-6
            )
            rowids = [rowid_of(v, [p for p, _ in dense[0]]) for v in views]
            similar = [v.similarity(query, r) for v, r in zip(views, rowids, strict=True)]
            np.testing.assert_allclose(similar[0], similar[1], atol=1e-6)
            np.testing.assert_allclose(similar[0], [s for _, s in dense[0]], atol=1e-6)
        for text in ("aid euros billion", "storm flood bridge", "ferry port ferry", "number 9"):
            lexical = [by_passage(v, *v.lexical_scores(text)) for v in views]
            assert sorted(lexical[0]) == sorted(lexical[1]), f"BM25 of {text!r} differs"
    finally:
        postgres.close()
