"""What only the PostgreSQL store has: the unique content hash under concurrent writers,
migrations, an unreachable or restarted server, statement timeouts, the IVFFlat index's
life (built, clustered again, a cut-short build replaced), a writer killed mid-write,
and the whole pipeline answering from it."""

from __future__ import annotations

import dataclasses
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psycopg
import pytest

from index.postgres import PostgresStore
from index.postgres.local import LocalPostgres, free_port
from index.postgres.schema import SCHEMA_VERSION, vector_indexes
from index.protocol import IndexStoreError, NewArticle, StoreIdentity
from index.vectors import ivf_lists
from rag.embedding import Embedder
from rag.pipeline import Pipeline
from rag.settings import Settings
from tests.index.kills import kill_after_some_commits

MakeArticle = Callable[..., NewArticle]


def test_concurrent_writers_store_one_article_once_without_asking(
    database_url: str, identity: StoreIdentity, make_article: MakeArticle
) -> None:
    """Without looking it up first, two writers add the same content (under two ids):
    the unique content hash keeps the first and the counts and statistics stay right."""
    stores = [PostgresStore(database_url, identity) for _ in range(2)]
    item = make_article(3, chunks=3)
    twin = dataclasses.replace(
        item,
        article=dataclasses.replace(item.article, id="twin"),
        chunks=[dataclasses.replace(c, article_id="twin") for c in item.chunks],
    )
    start = threading.Barrier(2)

    def add(store: PostgresStore, new: NewArticle) -> None:
        start.wait()
        with store.writing() as writer:
            writer.add([new, make_article(10 + len(new.article.id))])

    threads = [
        threading.Thread(target=add, args=(store, new))
        for store, new in zip(stores, (item, twin), strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    view = stores[0].view()
    assert view is not None
    assert (view.articles_count, view.chunks_count) == (3, 7)
    assert len({a.content_hash for a, _ in view.articles()}) == 3
    assert stores[1].check() == []
    for store in stores:
        store.close()


def test_migrations_run_once_and_a_newer_schema_is_refused(
    database_url: str, identity: StoreIdentity, make_article: MakeArticle
) -> None:
    first = PostgresStore(database_url, identity)
    with first.writing() as writer:
        writer.add([make_article(1)])
    second = PostgresStore(database_url, identity)
    assert second.view() is not None
    with psycopg.connect(database_url) as connection:
        versions = connection.execute("SELECT version FROM schema_version").fetchall()
        assert [v[0] for v in versions] == list(range(1, SCHEMA_VERSION + 1))
        connection.execute(
            "INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 1,)
        )
    newer = PostgresStore(database_url, identity)
    with pytest.raises(IndexStoreError, match=r"schema is at version \d+, newer than this code"):
        newer.view()
    for store in (first, second, newer):
        store.close()


def test_an_unreachable_database_is_an_index_error_naming_it_without_secrets(
    identity: StoreIdentity,
) -> None:
    port = free_port()
    store = PostgresStore(
        f"postgresql://reader:s3cret@127.0.0.1:{port}/news", identity, connect_timeout_s=1
    )
    started = time.monotonic()
    with pytest.raises(IndexStoreError) as raised:
        store.view()
    assert time.monotonic() - started < 10
    assert f"127.0.0.1:{port}/news cannot be reached" in str(raised.value)
    assert "s3cret" not in str(raised.value)
    store.close()


def test_a_restarted_server_is_used_again_without_reopening_the_store(
    postgres_server: LocalPostgres,
    database_url: str,
    identity: StoreIdentity,
    make_article: MakeArticle,
) -> None:
    store = PostgresStore(database_url, identity, connect_timeout_s=1)
    with store.writing() as writer:
        writer.add([make_article(1)])
    postgres_server.stop()
    try:
        with pytest.raises(IndexStoreError, match=r"PostgreSQL at 127\.0\.0\.1"):
            store.view()
    finally:
        postgres_server.start()
    view = store.view()
    assert view is not None and view.articles_count == 1
    assert len(view.lexical_scores("number")[0]) == 2
    with store.writing() as writer:
        writer.add([make_article(2)])
    assert store.check() == []
    store.close()


def test_reads_go_to_the_read_database(
    database_url: str, identity: StoreIdentity, make_article: MakeArticle
) -> None:
    replica = database_url + "?application_name=replica-reader"  # the same database here
    store = PostgresStore(database_url, identity, read_url=replica)
    with store.writing() as writer:
        writer.add([make_article(1)])
    view = store.view()
    assert view is not None and view.articles_count == 1
    with store.reading() as connection:
        name = connection.execute("SHOW application_name").fetchone()
    assert name == ("replica-reader",)
    assert view.description()["read_database"].endswith(database_url.rsplit("/", 1)[1])
    store.close()


def test_a_slow_statement_is_cancelled_as_an_index_error(
    database_url: str, identity: StoreIdentity
) -> None:
    store = PostgresStore(database_url, identity, statement_timeout_ms=100)
    with pytest.raises(IndexStoreError, match="statement timeout"), store.reading() as connection:
        connection.execute("SELECT pg_sleep(2)")
    with store.reading() as connection:  # the connection is still usable
        assert connection.execute("SELECT 1").fetchone() == (1,)
    store.close()


def test_dense_search_uses_the_ivf_index_once_built_above_the_exact_threshold(
    database_url: str, identity: StoreIdentity, make_article: MakeArticle
) -> None:
    exact = PostgresStore(database_url, identity)
    no_scans = database_url + "?options=-c%20enable_seqscan%3Doff"  # small: the index anyway
    approximate = PostgresStore(no_scans, identity, exact_search_below=0)
    with exact.writing() as writer:
        writer.add([make_article(n, chunks=2) for n in range(200)])
    assert approximate.view() is not None  # opening it finds the index due and builds it
    approximate.wait_for_merge()
    query = make_article(17).vectors[0]
    views = [exact.view(), approximate.view()]
    assert views[0] is not None and views[1] is not None
    assert views[0].description()["vector_index"]["type"] == "exact"
    described = views[1].description()["vector_index"]
    assert described["type"] == "ivfflat"
    assert (described["lists"], described["probes"]) == (ivf_lists(400), ivf_lists(400))
    results = [v.dense_search(query, 10) for v in views]
    assert results[1][1].tolist() == results[0][1].tolist(), "every list probed: exact"
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-6)
    allowed = set(results[0][1][5:].tolist())
    _, filtered = views[1].dense_search(query, 3, allowed)
    assert filtered.tolist() == results[0][1][5:8].tolist(), "a filtered scan goes on"
    with approximate.reading() as connection:
        plan = connection.execute(
            "EXPLAIN SELECT rowid FROM chunks ORDER BY embedding <#> %s::halfvec LIMIT 10",
            ("[" + ",".join(["0.1"] * identity.dimension) + "]",),
        ).fetchall()
        (index,) = vector_indexes(connection)
    assert index[1] and index[0] in " ".join(str(row[0]) for row in plan)
    for store in (exact, approximate):
        store.close()


def _indexes_and_count(database_url: str) -> tuple[list[tuple[str, bool]], int]:
    with psycopg.connect(database_url) as connection:
        row = connection.execute("SELECT vector_index_chunks FROM meta").fetchone()
        assert row is not None
        return vector_indexes(connection), int(row[0])


def test_the_vector_index_is_clustered_again_after_growth_and_after_a_rebuild(
    database_url: str, identity: StoreIdentity, make_article: MakeArticle
) -> None:
    store = PostgresStore(database_url, identity, exact_search_below=100)
    with store.writing() as writer:
        writer.add([make_article(n) for n in range(40)])  # 80 chunks: exact search
    store.wait_for_merge()
    assert _indexes_and_count(database_url) == ([], 0)
    with store.writing() as writer:
        writer.add([make_article(n) for n in range(40, 60)])
    store.wait_for_merge()
    indexes, count = _indexes_and_count(database_url)
    assert count == 120 and len(indexes) == 1 and indexes[0][1]
    first = indexes[0][0]
    with store.writing() as writer:  # 480 chunks: not yet 4 times as many
        writer.add([make_article(n) for n in range(60, 240)])
    store.wait_for_merge()
    assert _indexes_and_count(database_url) == ([(first, True)], 120)
    with store.writing() as writer:
        writer.add([make_article(n) for n in range(240, 250)])
    store.wait_for_merge()
    indexes, count = _indexes_and_count(database_url)
    assert count == 500 and len(indexes) == 1 and indexes[0][0] != first
    view = store.view()
    assert view is not None and view.vector_lists == ivf_lists(500)
    with store.rebuilding() as writer:
        writer.add([make_article(n, chunks=3) for n in range(1000, 1050)])
    store.wait_for_merge()
    rebuilt, count = _indexes_and_count(database_url)
    assert count == 150 and len(rebuilt) == 1 and rebuilt[0][0] != indexes[0][0]
    assert store.check() == []
    store.close()


def test_a_vector_index_build_cut_short_is_reported_and_replaced(
    database_url: str, identity: StoreIdentity, make_article: MakeArticle
) -> None:
    store = PostgresStore(database_url, identity)
    with store.writing() as writer:
        writer.add([make_article(n) for n in range(50)])
    with (
        psycopg.connect(database_url) as writing,
        psycopg.connect(database_url, autocommit=True) as building,
    ):
        writing.execute("LOCK TABLE chunks IN ROW EXCLUSIVE MODE")  # a write in flight
        building.execute("SET statement_timeout = 300")
        with pytest.raises(psycopg.errors.QueryCanceled):  # waiting for that write
            building.execute(
                "CREATE INDEX CONCURRENTLY chunks_embedding_cut ON chunks"
                " USING ivfflat (embedding halfvec_ip_ops) WITH (lists = 4)"
            )
    assert _indexes_and_count(database_url)[0] == [("chunks_embedding_cut", False)]
    assert store.check() == ["invalid indexes: chunks_embedding_cut"]
    assert store.merge(force=True)
    ((index, valid),), _ = _indexes_and_count(database_url)
    assert valid and index != "chunks_embedding_cut"
    assert store.check() == []
    store.close()


def test_a_rebuild_for_another_model_stops_a_vector_index_build_in_flight(
    database_url: str, identity: StoreIdentity, make_article: MakeArticle
) -> None:
    """A rebuild that changes the vector column's type needs the table to itself; a
    build of the old vectors' index must not hold it up (nor deadlock with it): the
    rebuild cancels it, and the new vectors get their own index."""
    store = PostgresStore(database_url, identity, exact_search_below=10**6)
    with store.writing() as writer:
        writer.add([make_article(n) for n in range(50)])
    with psycopg.connect(database_url) as reader:
        reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        reader.execute("SELECT 1")  # an old snapshot: a concurrent build waits for it
        failure: list[BaseException] = []

        def build() -> None:
            try:
                store.merge(force=True)
            except BaseException as error:  # the test reports it
                failure.append(error)

        builder = threading.Thread(target=build)
        builder.start()
        deadline = time.monotonic() + 30
        while not _building(database_url):
            assert time.monotonic() < deadline and builder.is_alive(), failure
            time.sleep(0.05)
        wider = dataclasses.replace(identity, model_name="wider", dimension=12)
        rebuilt = PostgresStore(database_url, wider, exact_search_below=0)
        item = make_article(100)
        rebuilding = threading.Thread(target=_rebuild_with, args=(rebuilt, item, failure))
        rebuilding.start()
        rebuilding.join(timeout=30)
        assert not rebuilding.is_alive(), "the rebuild waited for the build"
        builder.join(timeout=30)
    assert not failure, failure
    rebuilt.wait_for_merge()
    ((_, valid),), count = _indexes_and_count(database_url)
    assert valid and count == 2
    view = rebuilt.view()
    assert view is not None and view.chunks_count == 2
    assert rebuilt.check() == []
    rebuilt.close()
    store.close()


def _building(database_url: str) -> bool:
    """Whether an index build is under way in the database."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_progress_create_index WHERE datname = current_database()"
        ).fetchone()
        return row is not None and int(row[0]) > 0


def _rebuild_with(store: PostgresStore, item: NewArticle, failure: list[BaseException]) -> None:
    """Rebuild ``store`` from ``item``, its vectors widened to the store's dimension."""
    extra = store.identity.dimension - item.vectors.shape[1]
    widened = dataclasses.replace(
        item,
        vectors=np.pad(item.vectors, ((0, 0), (0, extra))),
        sentence_vectors=[np.pad(s, ((0, 0), (0, extra))) for s in item.sentence_vectors],
    )
    try:
        with store.rebuilding() as writer:
            writer.add([widened])
    except BaseException as error:  # the test reports it
        failure.append(error)


def test_a_database_of_the_first_schema_is_upgraded_to_the_ivf_index(
    database_url: str, identity: StoreIdentity, make_article: MakeArticle
) -> None:
    store = PostgresStore(database_url, identity, exact_search_below=0)
    with store.writing() as writer:
        writer.add([make_article(n) for n in range(30)])
    store.close()
    with psycopg.connect(database_url) as connection:  # back to schema 1, HNSW and all
        for name, _ in vector_indexes(connection):
            connection.execute(f"DROP INDEX {name}".encode())
        connection.execute(
            "CREATE INDEX chunks_embedding ON chunks USING hnsw (embedding halfvec_ip_ops)"
        )
        connection.execute("ALTER TABLE meta DROP COLUMN vector_index_chunks")
        connection.execute("DELETE FROM schema_version WHERE version > 1")
    upgraded = PostgresStore(database_url, identity, exact_search_below=0)
    view = upgraded.view()
    assert view is not None and view.chunks_count == 60
    upgraded.wait_for_merge()
    ((name, valid),), count = _indexes_and_count(database_url)
    assert valid and name != "chunks_embedding" and count == 60
    view = upgraded.view()
    assert view is not None and view.vector_lists == ivf_lists(60)
    upgraded.close()


CHILD = """
import sys
sys.path.insert(0, sys.argv[2])
from tests.index.articles import IDENTITY, new_article
from index.postgres import PostgresStore

store = PostgresStore(sys.argv[1], IDENTITY)
view = store.view()
first = 1 + max((int(a.id[1:]) for a, _ in view.articles()), default=-1) if view else 0
print("ready", flush=True)
for n in range(first, first + 100000):
    with store.writing() as writer:
        writer.add([new_article(n, chunks=3)])
        writer.delete([f"a{n - 5:05d}"] if n % 3 == 0 else [])
    print("committed", n, flush=True)
"""


def test_sigkill_keeps_exactly_the_committed_writes(
    database_url: str, identity: StoreIdentity, tmp_path: Path
) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    rng = random.Random("postgres-kills")
    store = PostgresStore(database_url, identity)
    for _ in range(3):
        child = subprocess.Popen(
            [sys.executable, str(script), database_url, str(Path(__file__).parents[2])],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        last, _ = kill_after_some_commits(child, rng, longest_wait=0.3)
        view = store.view()
        assert view is not None
        present = {a.id for a, _ in view.articles()}
        committed = {f"a{n:05d}" for n in range(last + 1)}
        committed -= {f"a{n - 5:05d}" for n in range(last + 1) if n % 3 == 0}
        following = last + 1
        in_flight = committed | {f"a{following:05d}"}
        in_flight -= {f"a{following - 5:05d}"} if following % 3 == 0 else set()
        assert present in (committed, in_flight)
        assert store.check() == []
    store.close()


def test_the_pipeline_answers_from_postgres_as_from_the_embedded_store(
    embedder: Embedder, database_url: str, sample_pipeline: Pipeline, tmp_path: Path
) -> None:
    settings = Settings(store="postgres", database_url=database_url, index_dir=tmp_path / "none")
    pipeline = Pipeline.open(settings, embedder)  # indexes the sample articles
    try:
        assert pipeline.stats()["articles"] == 3
        result = pipeline.ask("What aid did Macron commit?")
        assert result.answers, "an answer"
        best = result.answers[0]
        assert "three billion euros" in best.text
        article = pipeline.article(best.article_id)
        assert article is not None
        assert article.text[best.start : best.end] == best.text
        assert article.text[best.context.start : best.context.end] == best.context.text
        reference = sample_pipeline.ask("What aid did Macron commit?")
        assert [p.passage_id for p in result.passages] == [p.passage_id for p in reference.passages]
        np.testing.assert_allclose(
            [p.score for p in result.passages], [p.score for p in reference.passages], atol=2e-4
        )
        assert (best.text, best.start) == (reference.answers[0].text, reference.answers[0].start)
        views = [pipeline.refresh(), sample_pipeline.refresh()]
        for question in ("What aid did Macron commit?", "Who met Zelensky in Brussels?"):
            found = []
            for view in views:
                assert view is not None
                rowids, scores = view.lexical_scores(question)
                chunks = view.chunks(rowids.tolist())
                found.append(
                    sorted(
                        (chunks[int(r)].chunk.passage_id, float(s))
                        for r, s in zip(rowids, scores, strict=True)
                    )
                )
            assert found[0] == found[1], "BM25 over real articles agrees to the bit"
    finally:
        pipeline.close()


def test_postgres_without_a_database_url_is_a_clear_error(embedder: Embedder) -> None:
    with pytest.raises(IndexStoreError, match="RAG_STORE=postgres needs RAG_DATABASE_URL"):
        Pipeline(Settings(store="postgres", seed_sample_articles=False), embedder)
