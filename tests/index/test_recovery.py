"""Recovery: damaged files are named, `rag rebuild` restores them, and SIGKILL mid-ingest
never leaves a torn index."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.commands import app
from rag.embedding import Embedder
from rag.pipeline import Pipeline
from rag.settings import Settings

runner = CliRunner()


@pytest.mark.parametrize(
    "damage", ["delete-vectors", "truncate-vectors", "corrupt-bm25", "segment-record"]
)
def test_damaged_index_is_named_and_rebuilt(
    damage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder: Embedder
) -> None:
    index_dir = tmp_path / "index"
    monkeypatch.setenv("RAG_INDEX_DIR", str(index_dir))
    pipeline = Pipeline.open(Settings(index_dir=index_dir), embedder)
    before = pipeline.ask("What aid did Macron commit?")
    assert pipeline.store.merge(force=True)
    segments = index_dir / "current" / "segments"
    segment = segments / (segments / "CURRENT").read_text()
    target = {
        "delete-vectors": segment / "vectors.faiss",
        "truncate-vectors": segment / "vectors.faiss",
        "corrupt-bm25": segment / "lexical" / "documents.npy",
        "segment-record": segment / "segment.json",
    }[damage]
    if damage == "delete-vectors":
        target.unlink()
    else:
        target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 3])

    broken = runner.invoke(app, ["ask", "What aid did Macron commit?"])
    assert broken.exit_code == 2
    assert target.name in broken.output and "rag rebuild" in broken.output
    assert "Traceback" not in broken.output

    rebuilt = runner.invoke(app, ["rebuild"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "3 articles" in rebuilt.output
    assert runner.invoke(app, ["check"]).exit_code == 0
    after = Pipeline.open(Settings(index_dir=index_dir), embedder).ask(
        "What aid did Macron commit?"
    )
    assert [a.text for a in after.answers] == [a.text for a in before.answers]


def test_rebuild_uses_the_previous_store_when_the_records_are_damaged(
    empty_pipeline: Pipeline, tmp_path: Path
) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_text(json.dumps({"title": "Port", "text": "The port reopened on Monday."}))
    empty_pipeline.ingest([feed])
    empty_pipeline.rebuild()  # the first store folder stays as the previous one
    empty_pipeline.ingest([Settings().sample_articles_dir])
    index_dir = empty_pipeline.settings.index_dir
    newest = index_dir / os.readlink(index_dir / "current")
    empty_pipeline.close()
    (newest / "records.sqlite").write_bytes(b"not a database at all" * 100)
    for leftover in ("records.sqlite-wal", "records.sqlite-shm"):
        (newest / leftover).unlink(missing_ok=True)
    report = empty_pipeline.rebuild()
    assert [a.title for a in report.added] == ["Port"]  # the last readable records
    assert empty_pipeline.check() == []


# The child ingests with a stand-in embedder (hashed bag of words, no torch start-up) so
# that twenty kills stay quick; what is under test is the write path, not the model.
CRASH_SCRIPT = """
import sys, time, zlib
from pathlib import Path
import numpy as np
from rag.embedding import Embedder, PassageVectors
from rag.pipeline import Pipeline
from rag.settings import Settings

class HashingEmbedder(Embedder):
    dimension = 384
    def warm_up(self): pass
    def count_tokens(self, texts): return [len(t.split()) for t in texts]
    def embed(self, texts, on_batch=None):
        vectors = np.zeros((len(texts), 384), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.split():
                vectors[row, zlib.crc32(word.encode()) % 384] += 1.0
            time.sleep(0.002)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
        return vectors
    def embed_passages(self, texts, spans, on_batch=None):
        sentences = [self.embed([t[a:b] for a, b in s]) for t, s in zip(texts, spans)]
        return PassageVectors(self.embed(texts, on_batch), sentences)

settings = Settings(index_dir=Path(sys.argv[1]), seed_sample_articles=False, ingest_commit_every=4)
pipeline = Pipeline.open(settings, HashingEmbedder(settings.model_name))
print("ready", flush=True)
pipeline.ingest([Path(sys.argv[2])])
print("done", flush=True)
"""


def committed_ids(index_dir: Path) -> list[str]:
    """Ids in the index, checked for consistency between all its parts."""
    from index.protocol import StoreIdentity
    from index.store import EmbeddedStore

    settings = Settings(index_dir=index_dir, seed_sample_articles=False)
    store = EmbeddedStore(index_dir, StoreIdentity(settings.model_name, 384, "torch", "float32"))
    view = store.view()
    if view is None:
        return []
    assert store.check() == [], store.check()
    ids = [a.id for a, _ in view.articles()]
    store.close()
    return ids


def seq(index_dir: Path) -> int:
    try:
        records = sqlite3.connect(
            f"file:{index_dir / 'current' / 'records.sqlite'}?mode=ro", uri=True
        )
        [(value,)] = records.execute("SELECT value FROM meta WHERE key = 'seq'")
        records.close()
        return int(value)
    except (sqlite3.Error, ValueError):
        return -1


def wait_for_next_commit(index_dir: Path, process: subprocess.Popen[str]) -> None:
    """Block until the child commits a new batch (or exits), so that every run makes
    progress and the kill lands at a random point after a commit."""
    start = seq(index_dir)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if seq(index_dir) != start:
            return
        time.sleep(0.005)


def test_sigkill_during_ingest_never_tears_the_index(tmp_path: Path) -> None:
    """Kill a real ingest process at random moments 20 times; every time the index loads,
    is consistent, and holds exactly a prefix of whole committed batches; then it resumes."""
    feed = tmp_path / "feed.jsonl"
    ids = [f"a{n:04d}" for n in range(1000)]
    with feed.open("w") as out:
        for n, article_id in enumerate(ids):
            sentences = " ".join(
                f"Sentence {k} of report {n} about harbour {n % 7}." for k in range(6)
            )
            out.write(
                json.dumps({"id": article_id, "title": f"Report {n}", "text": sentences}) + "\n"
            )
    index_dir = tmp_path / "index"
    script = tmp_path / "ingest.py"
    script.write_text(CRASH_SCRIPT)
    rng = random.Random(20241010)
    kills = 0
    while kills < 20:
        process = subprocess.Popen(
            [sys.executable, str(script), str(index_dir), str(feed)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        wait_for_next_commit(index_dir, process)
        time.sleep(rng.uniform(0.0, 0.3))
        finished = process.poll() is not None
        process.send_signal(signal.SIGKILL)
        process.wait()
        present = committed_ids(index_dir)
        assert present == ids[: len(present)]
        assert len(present) % 4 == 0 or len(present) == len(ids)
        if finished or len(present) == len(ids):
            break
        kills += 1
    assert kills == 20, f"the ingest finished after {kills} kills; make the feed larger"
    print(f"survived {kills} kills with {len(committed_ids(index_dir))} of {len(ids)} committed")
    resumed = subprocess.run(
        [sys.executable, str(script), str(index_dir), str(feed)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert resumed.stdout.split() == ["ready", "done"]
    assert committed_ids(index_dir) == ids
