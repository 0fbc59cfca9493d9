"""The embedded store: in-place transactional writes, views, merges, identity checks,
crash safety (SIGKILL during adds, deletes and merges) and several processes at once."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from index.protocol import IndexStoreError, StoreIdentity
from index.store import EmbeddedStore, MergePolicy
from tests.index.articles import DIM, IDENTITY, new_article
from tests.index.kills import kill_after_some_commits

NEVER = MergePolicy(min_changes=10**9)


def stored_ids(store: EmbeddedStore) -> list[str]:
    view = store.view()
    return [] if view is None else sorted(a.id for a, _ in view.articles())


def test_writes_are_transactions_seen_by_the_next_view(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, IDENTITY, NEVER)
    assert store.view() is None
    with store.writing() as writer:
        writer.add([new_article(1), new_article(2)])
    first = store.view()
    assert first is not None and first.generation == 1
    assert (first.articles_count, first.chunks_count) == (2, 4)
    with store.writing() as writer:
        assert writer.delete(["a00001"]) == 2
        writer.add([new_article(3)])
    second = store.view()
    assert second is not None and second.generation == 2
    assert stored_ids(store) == ["a00002", "a00003"]
    assert store.check() == []
    assert first.segments.size == 4, "an older view never changes"


def test_a_failed_block_keeps_only_what_it_committed(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, IDENTITY, NEVER)
    with pytest.raises(RuntimeError), store.writing() as writer:
        writer.add([new_article(1)])
        writer.commit()
        writer.add([new_article(2)])
        raise RuntimeError("the embedder failed")
    assert stored_ids(store) == ["a00001"]
    with store.writing() as writer:  # the store is still writable
        writer.add([new_article(2)])
    assert stored_ids(store) == ["a00001", "a00002"] and store.check() == []


def searches(store: EmbeddedStore) -> list[object]:
    view = store.view()
    assert view is not None
    query = np.random.default_rng(99).standard_normal(DIM).astype(np.float32)
    scores, ids = view.dense_search(query, 15)
    results: list[object] = [ids.tolist(), np.round(scores, 5).tolist()]
    for text in ("aid euros billion", "storm flood bridge", "ferry port"):
        rowids, bm25 = view.lexical_scores(text)
        results += [rowids.tolist(), np.round(bm25, 5).tolist()]
    return results


def test_results_are_identical_before_and_after_a_merge(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, IDENTITY, NEVER)
    with store.writing() as writer:
        writer.add([new_article(n, chunks=3) for n in range(60)])
    assert store.merge(force=True)
    with store.writing() as writer:
        writer.add([new_article(n, chunks=3) for n in range(60, 90)])
        writer.delete([f"a{n:05d}" for n in (5, 6, 61, 62, 89)])
    before = searches(store)
    assert store.merge(force=True)
    view = store.view()
    assert view is not None and view.segments.delta_size == 0 and len(view.segments.deleted) == 0
    assert searches(store) == before
    assert store.check() == []
    restarted = EmbeddedStore(tmp_path, IDENTITY, NEVER)  # a fresh process's state
    assert searches(restarted) == before


def test_a_restart_replays_only_the_tail_after_the_base(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, IDENTITY, NEVER)
    with store.writing() as writer:
        writer.add([new_article(n) for n in range(50)])
    store.merge(force=True)
    with store.writing() as writer:
        writer.add([new_article(n) for n in range(50, 53)])
        writer.delete(["a00000"])
    view = EmbeddedStore(tmp_path, IDENTITY, NEVER).view()
    assert view is not None
    assert (view.segments.base.size, view.segments.delta_size) == (100, 6)
    assert len(view.segments.deleted) == 2 and view.chunks_count == 104


def test_the_merge_policy_merges_in_the_background(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, IDENTITY, MergePolicy(min_changes=20, ratio=0.5))
    for n in range(30):
        with store.writing() as writer:
            writer.add([new_article(n)])
    store.wait_for_merge()
    view = store.view()
    assert view is not None and view.segments.base.size >= 20
    assert view.segments.delta_size + view.segments.base.size == 60
    assert store.check() == []
    segments = list((tmp_path / view.name / "segments").glob("seg-*"))
    assert len(segments) <= 2, "older base segments are pruned"


def test_another_model_or_vector_space_is_refused(tmp_path: Path) -> None:
    with EmbeddedStore(tmp_path, IDENTITY).writing() as writer:
        writer.add([new_article(1)])
    for other, message in (
        (StoreIdentity("other", DIM, "torch", "float32"), "built with model 'm'"),
        (StoreIdentity("m", DIM + 1, "torch", "float32"), "8 dimensions"),
        (StoreIdentity("m", DIM, "onnx-int8", "int8"), "RAG_EMBED_BACKEND=torch"),
    ):
        with pytest.raises(IndexStoreError, match=message):
            EmbeddedStore(tmp_path, other).view()
        with (
            pytest.raises(IndexStoreError, match=message),
            EmbeddedStore(tmp_path, other).writing() as writer,
        ):
            writer.add([new_article(2)])
    onnx = StoreIdentity("m", DIM, "onnx", "float32")  # float32 backends share vectors
    assert EmbeddedStore(tmp_path, onnx).view() is not None


def test_a_damaged_segment_is_named(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, IDENTITY, NEVER)
    with store.writing() as writer:
        writer.add([new_article(n) for n in range(5)])
    store.merge(force=True)
    view = store.view()
    assert view is not None
    vectors = next((tmp_path / view.name / "segments").glob("seg-*")) / "vectors.faiss"
    vectors.write_bytes(vectors.read_bytes()[:50])
    with pytest.raises(IndexStoreError, match=r"vectors\.faiss.*rag rebuild"):
        EmbeddedStore(tmp_path, IDENTITY).view()


def test_an_index_of_the_earlier_format_asks_for_a_rebuild(tmp_path: Path) -> None:
    version = tmp_path / "v000003"
    version.mkdir()
    (version / "manifest.json").write_text(json.dumps({"format_version": 2}))
    records = sqlite3.connect(version / "records.sqlite")
    records.execute(
        "CREATE TABLE articles (id TEXT PRIMARY KEY, title TEXT, text TEXT, url TEXT,"
        " source TEXT, published TEXT, dateline TEXT, content_hash TEXT, added_at TEXT)"
    )
    records.execute(
        "INSERT INTO articles VALUES ('x1', 'Old', 'Kept text.', NULL, NULL, NULL, NULL,"
        " 'h', '2024-01-01T00:00:00Z')"
    )
    records.commit()
    records.close()
    os.symlink("v000003", tmp_path / "current")
    store = EmbeddedStore(tmp_path, IDENTITY)
    with pytest.raises(IndexStoreError, match=r"earlier format.*rag rebuild"):
        store.view()
    assert [a.title for a in store.stored_articles()] == ["Old"]
    with store.rebuilding() as writer:
        writer.add([new_article(1)])
    assert stored_ids(store) == ["a00001"] and store.check() == []


CHILD = """
import sys, time
from pathlib import Path
from index.store import EmbeddedStore, MergePolicy
sys.path.insert(0, sys.argv[3])
from tests.index.articles import IDENTITY, new_article

directory, mode = Path(sys.argv[1]), sys.argv[2]
store = EmbeddedStore(directory, IDENTITY, MergePolicy(min_changes=10**9))
view = store.view()
print("ready", flush=True)
if mode in ("add", "merge"):
    stored = view.articles_count if view else 0
    first = 100000 + stored - 3000 if mode == "merge" else stored
    for n in range(first, first + 100000):
        with store.writing() as writer:
            writer.add([new_article(n, chunks=3)])
        print("committed", n, flush=True)
        if mode == "merge":
            print("merging", n, flush=True)
            store.merge(force=True)
elif mode == "delete":
    for n in range(100000):
        with store.writing() as writer:
            writer.delete([f"a{n:05d}"])
        print("committed", n, flush=True)
elif mode == "watch":
    other, mine = int(sys.argv[4]), int(sys.argv[5])
    seen = set()

    def look():
        for article, _ in store.view().articles():
            number = int(article.id[1:])
            if other <= number < other + 6 and number not in seen:
                seen.add(number)
                print("saw", number, time.time(), flush=True)

    for n in range(mine, mine + 6):
        with store.writing() as writer:
            writer.add([new_article(n)])
        print("wrote", n, time.time(), flush=True)
        until = time.monotonic() + 0.3
        while time.monotonic() < until:
            look()
            time.sleep(0.01)
    until = time.monotonic() + 10
    while len(seen) < 6 and time.monotonic() < until:
        look()
        time.sleep(0.01)
"""


def run_child(tmp_path: Path, mode: str, *extra: str) -> subprocess.Popen[str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    process = subprocess.Popen(
        [sys.executable, script, tmp_path / "index", mode, Path(__file__).parents[2], *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


@pytest.mark.parametrize(("mode", "kills"), [("add", 10), ("delete", 10), ("merge", 10)])
def test_sigkill_keeps_exactly_the_committed_writes(tmp_path: Path, mode: str, kills: int) -> None:
    """Kill a writing process at random moments; each time the index loads, passes
    check(), and holds exactly the writes committed (the one in flight wholly or not at
    all); a new process then goes on writing where the last one stopped."""
    index = tmp_path / "index"
    if mode in ("delete", "merge"):  # merges of a few thousand chunks take a while
        with EmbeddedStore(index, IDENTITY, NEVER).writing() as writer:
            writer.add([new_article(n, chunks=3) for n in range(3000)])
    rng = random.Random(f"{mode}-kills")
    mid_merge, deleted_up_to = 0, -1
    for _ in range(kills):
        process = run_child(tmp_path, mode)
        last, lines = kill_after_some_commits(process, rng, longest_wait=0.25)
        mid_merge += lines[-1].startswith("merging")
        store = EmbeddedStore(index, IDENTITY, NEVER)
        assert store.check() == []
        present = set(stored_ids(store))
        if mode == "delete":
            deleted_up_to = max(deleted_up_to, last)  # each child starts again from a00000
            done = {f"a{n:05d}" for n in range(deleted_up_to + 1)}
            assert not done & present
            assert len(present) in (3000 - len(done), 3000 - len(done) - 1)
        else:
            first = 100000 if mode == "merge" else 0
            added = {f"a{n:05d}" for n in range(first, last + 1)} | {
                f"a{n:05d}" for n in range(3000 if mode == "merge" else 0)
            }
            assert present in (added, added | {f"a{last + 1:05d}"})
        store.close()
    store = EmbeddedStore(index, IDENTITY, NEVER)
    view = store.view()
    assert view is not None
    if mode == "merge":
        assert view.segments.base.size > 9000, "merges completed between the kills"
        assert mid_merge >= kills // 3, f"only {mid_merge} kills landed inside a merge"
        assert store.merge(force=True) or view.segments.delta_size == 0
        assert not list(index.glob("*/segments/.tmp-*")), "a merge clears killed merges' files"


def test_two_processes_see_each_others_writes_within_two_seconds(tmp_path: Path) -> None:
    with EmbeddedStore(tmp_path / "index", IDENTITY, NEVER).writing() as writer:
        writer.add([new_article(1)])
    first = run_child(tmp_path, "watch", "200", "100")
    second = run_child(tmp_path, "watch", "100", "200")
    wrote, saw = {}, {}
    for process in (first, second):
        out, _ = process.communicate(timeout=60)
        for line in out.splitlines():
            kind, number, moment = line.split()
            (wrote if kind == "wrote" else saw)[int(number)] = float(moment)
    assert sorted(saw) == sorted(wrote) == [*range(100, 106), *range(200, 206)]
    delays = [saw[n] - wrote[n] for n in wrote]
    assert max(delays) < 2.0, delays
