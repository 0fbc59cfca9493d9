"""Writes: what one small write costs as the index grows, and what a merge costs.

At each size (10k, 100k and 1M chunks by default) a fresh :class:`index.store.EmbeddedStore`
is filled with synthetic chunks in large transactions and merged into one base segment,
as the index of a long-running service would be. Then, with merges held off (a
:class:`MergePolicy` that never comes due), one article of 10 chunks is added and one
deleted, :data:`REPEATS` times each, alternately: each timed from the start of its write
transaction until ``store.view()`` shows it. Then 1% of the chunks change (half added,
half deleted) and a forced merge folds them into a new base. Issue 11's promise is that a
write costs what it writes: adding an article at the largest size should cost at most
:data:`ADD_GROWTH_BAR` times what it costs at the smallest.

The chunks need no encoder: random unit vectors of 384 dimensions (one per chunk and one
per sentence), and texts cut from a stream of sentences whose words are drawn, Zipf-like,
from a small made-up vocabulary. FAISS runs on one thread, as the service sets it.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt
from rich.console import Console

from bench.common import Figure, Report, p50, p95, timed
from bench.plot import Panel, plot_lines
from index.protocol import NewArticle, StoreIdentity
from index.store import EmbeddedStore, EmbeddedView, MergePolicy
from rag.articles import create_article
from rag.settings import Settings
from records import Chunk

BENCH = "writes"
SIZES = (10_000, 100_000, 1_000_000)
TINY_SIZES = (1_000, 3_000)
DIMENSION = 384
CHUNKS_PER_ARTICLE = 10
SENTENCES_PER_CHUNK = 5
WORDS_PER_SENTENCE = 20
"""100 words a chunk, 5 sentences: about a real chunk (at most 200 word pieces)."""
VOCABULARY = 5_000
STREAM_SENTENCES = 50_000
SENTENCE_POOL = 8_192
"""Sentence vectors are slices of a pool of random unit vectors (stored as drawn)."""
BATCH_CHUNKS = 50_000
"""Chunks per bulk write transaction."""
REPEATS = 10
WARM_UP = 2
CHANGED_SHARE = 0.01
"""Share of the chunks changed before the timed merge."""
ADD_GROWTH_BAR = 1.5
NEVER = 2**62
"""A ``min_changes`` no delta reaches: no merge runs unless forced."""
IDENTITY = StoreIdentity("bench/synthetic-384", DIMENSION, "synthetic", "float32")
Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Plan:
    """How much the bench does (smaller in the smoke test)."""

    sizes: tuple[int, ...]
    repeats: int = REPEATS
    batch_chunks: int = BATCH_CHUNKS


FULL = Plan(SIZES)
TINY = Plan(TINY_SIZES, repeats=5, batch_chunks=1_000)


def parse_sizes(text: str) -> tuple[int, ...]:
    """``"10k,100k,1M"`` as chunk counts."""
    scale = {"k": 1_000, "m": 1_000_000}
    sizes = []
    for part in text.split(","):
        part = part.strip().lower().replace("_", "")
        factor = scale.get(part[-1:], 1)
        number = part[:-1] if factor > 1 else part
        sizes.append(round(float(number) * factor))
    if not sizes or min(sizes) < 2 * CHUNKS_PER_ARTICLE:
        raise ValueError(f"sizes must be at least {2 * CHUNKS_PER_ARTICLE} chunks: {text!r}")
    return tuple(sorted(set(sizes)))


def size_label(chunks: int) -> str:
    """``10k``, ``1M``, ``2.5k``: a size as the figures name it."""
    for factor, suffix in ((1_000_000, "M"), (1_000, "k")):
        if chunks >= factor:
            return f"{chunks / factor:g}{suffix}"
    return str(chunks)


class SyntheticChunks:
    """Articles of :data:`CHUNKS_PER_ARTICLE` synthetic chunks, drawn cheaply: the words
    once, as one stream of sentences; each chunk is a window of it, at a random sentence."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        lengths = self.rng.integers(4, 10, VOCABULARY)
        vocabulary = [
            "".join(self.rng.choice(letters, length)) + str(number)
            for number, length in enumerate(lengths)
        ]
        weights = 1.0 / np.arange(1, VOCABULARY + 1)
        draws = self.rng.choice(
            VOCABULARY, (STREAM_SENTENCES, WORDS_PER_SENTENCE), p=weights / weights.sum()
        )
        sentences = [" ".join(vocabulary[w] for w in row) + ". " for row in draws.tolist()]
        self.stream = "".join(sentences)
        self.starts = np.concatenate([[0], np.cumsum([len(s) for s in sentences])])
        """Sentence ``i`` is ``stream[starts[i]:starts[i + 1] - 1]`` (a space follows)."""
        pool = self.rng.standard_normal((SENTENCE_POOL, DIMENSION), dtype=np.float32)
        self.pool = pool / np.linalg.norm(pool, axis=1, keepdims=True)

    def articles(self, first: int, count: int) -> list[NewArticle]:
        """Articles ``syn-<first>`` to ``syn-<first + count - 1>``."""
        chunks = count * CHUNKS_PER_ARTICLE
        vectors = self.rng.standard_normal((chunks, DIMENSION), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        first_sentence = self.rng.integers(0, STREAM_SENTENCES - SENTENCES_PER_CHUNK, chunks)
        pooled = self.rng.integers(0, SENTENCE_POOL - SENTENCES_PER_CHUNK, chunks).tolist()
        rows = first_sentence[:, None] + np.arange(SENTENCES_PER_CHUNK + 1)
        ends = self.starts[rows]  # each chunk's sentence starts, and where the next begins
        spans = np.stack([ends[:, :-1], ends[:, 1:] - 1], axis=2) - ends[:, :1, None]
        bounds = np.stack([ends[:, 0], ends[:, -1] - 1], axis=1).tolist()
        span_lists = spans.tolist()
        items = []
        for number in range(count):
            article_id = f"syn-{first + number}"
            rows_of = range(number * CHUNKS_PER_ARTICLE, (number + 1) * CHUNKS_PER_ARTICLE)
            texts = [self.stream[bounds[r][0] : bounds[r][1]] for r in rows_of]
            article = create_article(
                f"Synthetic article {article_id}", "\n".join(texts), id=article_id
            )
            parts, offset = [], 0
            for ordinal, (row, text) in enumerate(zip(rows_of, texts, strict=True)):
                sentences = tuple((offset + a, offset + b) for a, b in span_lists[row])
                parts.append(
                    Chunk(article_id, ordinal, offset, offset + len(text), text, sentences)
                )
                offset += len(text) + 1
            sentence_vectors = [
                self.pool[pooled[r] : pooled[r] + SENTENCES_PER_CHUNK] for r in rows_of
            ]
            items.append(
                NewArticle(article, parts, vectors[rows_of.start : rows_of.stop], sentence_vectors)
            )
        return items


@dataclass(frozen=True)
class Costs:
    """What one size measured."""

    chunks: int
    bulk_s: float
    """The bulk write blocks: transactions plus the replay into this process's view."""
    bulk_records_s: float
    """Of which inside the transactions (SQLite)."""
    build_merge_s: float
    add_ms: list[float]
    delete_ms: list[float]
    pending_add_ms: list[float]
    """Adds with :data:`CHANGED_SHARE` of the chunks changed since the base."""
    changed: int
    merge_s: float
    disk: dict[str, int]
    vector_index: str
    batch_chunks: int


def run(report: Report, work: Path, *, plan: Plan, output: Path, log: Console) -> list[Costs]:
    """Measure each size of ``plan`` in a fresh store, report the figures and plot them."""
    faiss.omp_set_num_threads(Settings().faiss_threads)
    corpus = SyntheticChunks(seed=0)
    measured = []
    for size in plan.sizes:
        directory = work / f"writes-{size}"
        measured.append(measure(directory, corpus, size, plan, log))
        shutil.rmtree(directory, ignore_errors=True)
    _report(report, measured)
    output.mkdir(parents=True, exist_ok=True)
    path = plot(measured, output / "writes.png", report.machine["summary"])
    log.print(f"writes: wrote {path}")
    return measured


def measure(directory: Path, corpus: SyntheticChunks, size: int, plan: Plan, log: Console) -> Costs:
    """Build a store of ``size`` chunks, then time small writes and a merge on it."""
    store = EmbeddedStore(directory, IDENTITY, MergePolicy(min_changes=NEVER, background=False))
    label = size_label(size)
    articles = math.ceil(size / CHUNKS_PER_ARTICLE)
    per_batch = max(1, plan.batch_chunks // CHUNKS_PER_ARTICLE)
    bulk_s = records_s = 0.0
    log.print(f"writes: {label}: bulk writes of {per_batch * CHUNKS_PER_ARTICLE:,} chunks")
    for first in range(0, articles, per_batch):
        items = corpus.articles(first, min(per_batch, articles - first))
        started = time.perf_counter()
        with store.writing() as writer:
            writer.add(items)
            writer.commit()
            records_s += time.perf_counter() - started
        bulk_s += time.perf_counter() - started
    log.print(f"writes: {label}: {bulk_s:.1f} s; merging into a base segment")
    build_merge_s = timed(lambda: store.merge(force=True))
    view = _view(store)
    chunks = view.chunks_count
    assert view.segments.base.size == chunks and view.segments.delta_size == 0

    rng = np.random.default_rng(size)
    victims = iter(rng.permutation(articles).tolist())
    next_article = articles
    add_ms, delete_ms = [], []
    for _ in range(WARM_UP + plan.repeats):
        (item,) = corpus.articles(next_article, 1)
        next_article += 1
        add_ms.append(_timed_write(store, add=[item]))
        delete_ms.append(_timed_write(store, delete=[f"syn-{next(victims)}"]))
    add_ms, delete_ms = add_ms[WARM_UP:], delete_ms[WARM_UP:]

    store.merge(force=True)  # the changes so far, so that the next are 1% exactly
    changed_articles = max(1, round(size * CHANGED_SHARE / 2 / CHUNKS_PER_ARTICLE))
    log.print(f"writes: {label}: changing {2 * changed_articles * CHUNKS_PER_ARTICLE:,} chunks")
    with store.writing() as writer:
        writer.add(corpus.articles(next_article, changed_articles))
        writer.delete([f"syn-{next(victims)}" for _ in range(changed_articles)])
    next_article += changed_articles
    pending_add_ms = []
    for _ in range(WARM_UP + plan.repeats):
        (item,) = corpus.articles(next_article, 1)
        next_article += 1
        pending_add_ms.append(_timed_write(store, add=[item]))
    pending_add_ms = pending_add_ms[WARM_UP:]
    pending = _view(store).segments
    changed = pending.delta_size + len(pending.deleted)
    merge_s = timed(lambda: store.merge(force=True))
    view = _view(store)
    assert view.segments.delta_size == 0 and view.segments.base.size == view.chunks_count
    vector_index = str(view.description()["base_segment"]["type"])
    disk = _disk(directory)
    store.close()
    log.print(
        f"writes: {label}: add {p50(add_ms):.1f} ms, delete {p50(delete_ms):.1f} ms, "
        f"merge {merge_s:.1f} s"
    )
    return Costs(
        chunks,
        bulk_s,
        records_s,
        build_merge_s,
        add_ms,
        delete_ms,
        pending_add_ms,
        changed,
        merge_s,
        disk,
        vector_index,
        per_batch * CHUNKS_PER_ARTICLE,
    )


def _view(store: EmbeddedStore) -> EmbeddedView:
    view = store.view()
    assert view is not None
    return view


def _timed_write(
    store: EmbeddedStore, *, add: Sequence[NewArticle] = (), delete: Sequence[str] = ()
) -> float:
    """Milliseconds from the start of one write transaction until this process's view
    shows it; checks that it does."""
    before = _view(store).chunks_count
    started = time.perf_counter()
    with store.writing() as writer:
        writer.add(add)
        removed = writer.delete(delete)
    view = store.view()
    elapsed = (time.perf_counter() - started) * 1000
    assert view is not None
    expected = before + sum(len(item.chunks) for item in add) - removed
    assert view.chunks_count == expected == view.segments.size, (view.chunks_count, expected)
    return elapsed


def _disk(directory: Path) -> dict[str, int]:
    """Bytes on disk: the records, their WAL, the base segment in use, and older ones."""
    store = directory / "current"
    segments = store / "segments"
    current = (segments / "CURRENT").read_text().strip()
    sizes = {"records": 0, "wal": 0, "segment": 0, "older segments": 0}
    for path in store.rglob("*"):
        if not path.is_file():
            continue
        if path.name == "records.sqlite":
            kind = "records"
        elif path.name.startswith("records.sqlite-"):
            kind = "wal"
        elif path.is_relative_to(segments / current):
            kind = "segment"
        elif path.parent != segments:
            kind = "older segments"
        else:
            continue
        sizes[kind] += path.stat().st_size
    return sizes


def _report(report: Report, measured: Sequence[Costs]) -> None:
    for costs in measured:
        n = f"{size_label(costs.chunks)} chunks"
        bulk_rate = costs.chunks / costs.bulk_s
        disk = costs.disk
        one_copy = disk["records"] + disk["segment"]
        for figure in (
            Figure(
                BENCH,
                f"bulk write, {n}",
                bulk_rate,
                "chunks/s",
                note=f"transactions of {costs.batch_chunks:,} chunks: SQLite alone "
                f"{costs.chunks / costs.bulk_records_s:,.0f} chunks/s, the rest is the "
                "replay into the view (BM25 analysis)",
            ),
            Figure(BENCH, f"build merge, {n}", costs.build_merge_s, "s", note=costs.vector_index),
            Figure(
                BENCH,
                f"add one article ({CHUNKS_PER_ARTICLE} chunks), {n}",
                p50(costs.add_ms),
                "ms",
                note=f"median of {len(costs.add_ms)}, p95 {p95(costs.add_ms):.1f} ms; "
                "transaction + view refresh",
            ),
            Figure(
                BENCH,
                f"delete one article, {n}",
                p50(costs.delete_ms),
                "ms",
                note=f"median of {len(costs.delete_ms)}, p95 {p95(costs.delete_ms):.1f} ms",
            ),
            Figure(
                BENCH,
                f"add one article, 1% pending, {n}",
                p50(costs.pending_add_ms),
                "ms",
                note=f"median of {len(costs.pending_add_ms)}, after 1% of the chunks changed "
                "(half added, half deleted) since the base segment",
            ),
            Figure(
                BENCH,
                f"merge after 1% changes, {n}",
                costs.merge_s,
                "s",
                note=f"{costs.changed:,} chunks changed "
                f"({costs.changed / costs.chunks:.1%}); {costs.vector_index}",
            ),
            Figure(
                BENCH,
                f"disk per chunk, {n}",
                one_copy / costs.chunks,
                "B",
                note=f"records {disk['records'] / costs.chunks:.0f} B + base segment "
                f"{disk['segment'] / costs.chunks:.0f} B; besides: WAL "
                f"{disk['wal'] / 2**20:.0f} MiB, previous segment "
                f"{disk['older segments'] / 2**20:.0f} MiB",
            ),
        ):
            report.add(figure)
    if len(measured) > 1:
        small, large = measured[0], measured[-1]
        span = f"{size_label(large.chunks)} / {size_label(small.chunks)}"
        for what, costs_of in (("add", "add_ms"), ("delete", "delete_ms")):
            growth = p50(getattr(large, costs_of)) / p50(getattr(small, costs_of))
            report.add(
                Figure(
                    BENCH,
                    f"{what} one article, {span}",
                    growth,
                    "x",
                    bar=f"<= {ADD_GROWTH_BAR:g}x",
                    met=growth <= ADD_GROWTH_BAR,
                    note="a write costs what it writes, not what the index holds",
                )
            )


def plot(measured: Sequence[Costs], path: Path, machine: str) -> Path:
    """Cost against size, log x: one write, merges, bulk rate, disk."""
    sizes = [float(c.chunks) for c in measured]

    def line(values: Sequence[float]) -> tuple[list[float], list[float]]:
        return sizes, list(values)

    panels = [
        Panel(
            "one write, until visible",
            "ms (median)",
            {
                "add 1 article": line([p50(c.add_ms) for c in measured]),
                "delete 1 article": line([p50(c.delete_ms) for c in measured]),
                "add, 1% pending": line([p50(c.pending_add_ms) for c in measured]),
            },
        ),
        Panel(
            "merge",
            "s",
            {
                "build (all chunks)": line([c.build_merge_s for c in measured]),
                "after 1% changes": line([c.merge_s for c in measured]),
            },
        ),
        Panel("bulk write", "chunks/s", {"bulk": line([c.chunks / c.bulk_s for c in measured])}),
        Panel(
            "disk per chunk",
            "B",
            {
                "records + segment": line(
                    [(c.disk["records"] + c.disk["segment"]) / c.chunks for c in measured]
                )
            },
        ),
    ]
    return plot_lines(panels, path, f"bench writes · {machine}", "chunks in the index")
