"""Scale: an index of synthetic chunks (a million by default) built and loaded through the
real :class:`index.store.IndexStore`, then searched.

Synthetic vectors are made to look like real ones: real all-MiniLM-L6-v2 embeddings of
news chunks are the topic centres; each synthetic chunk mixes two centres (weights 0.6-1
and the rest) and adds Gaussian noise of a random scale (per-dimension sigma 0.02-0.05,
so its cosine to its main centre spreads over roughly 0.7-0.95), then is normalised.
Its text is words drawn from the same two centres' chunk texts, so BM25 and the vectors
agree on the topic. Queries are drawn the same way but are not in the index.
"""

from __future__ import annotations

import multiprocessing
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt
from rich.console import Console

from bench.common import NEWS_CSV, Figure, Report, p50, p95, timed
from index.store import IndexStore, NewArticle
from index.vectors import IVF_MIN_VECTORS, VectorIndex
from rag.articles import Article, parse_bytes
from rag.chunking import Chunk
from rag.embedding import Embedder
from rag.pipeline import Pipeline
from rag.retrieval import Retriever
from rag.settings import Settings

BENCH = "scale"
CHUNKS_PER_ARTICLE = 10
WORDS_PER_CHUNK = 40
QUERIES = 200
NPROBES = (4, 8, 16, 32, 64)
"""IVF lists probed per search, swept to show the speed/recall trade-off."""
Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Topics:
    """Real chunk texts and their embeddings: the centres synthetic chunks are drawn around."""

    texts: list[list[str]]
    vectors: Vectors


def real_topics(embedder: Embedder, articles: int, log: Console) -> Topics:
    """Embed the chunks of the first ``articles`` news articles."""
    parsed, _ = parse_bytes(NEWS_CSV.read_bytes(), NEWS_CSV.name)
    chunker = Pipeline(Settings(), embedder).chunker
    texts = [c.text for a in parsed[:articles] for c in chunker.chunk(a)]
    log.print(f"scale: embedding {len(texts)} real chunks as topic centres")
    return Topics([t.split() for t in texts], embedder.embed(texts))


def short_queries(embedder: Embedder, topics: Topics, count: int, seed: int) -> Vectors:
    """Question-like queries: 12-word windows of real chunks, embedded. Short texts sit
    farther from every passage than a passage does, as questions do, so their neighbours
    spread over more clusters: the harder case for IVF."""
    rng = np.random.default_rng(seed)
    windows = []
    for topic in rng.integers(0, len(topics.texts), count):
        words = topics.texts[topic]
        start = int(rng.integers(0, max(1, len(words) - 12)))
        windows.append(" ".join(words[start : start + 12]))
    return embedder.embed(windows)


class Synthesiser:
    """Draws chunk vectors and texts around the topics (see the module docstring)."""

    def __init__(self, topics: Topics, seed: int) -> None:
        self.topics = topics
        self.rng = np.random.default_rng(seed)

    def draw(self, count: int) -> tuple[Vectors, list[str]]:
        """``count`` normalised vectors and their texts."""
        centres = self.topics.vectors
        main = self.rng.integers(0, len(centres), count)
        second = self.rng.integers(0, len(centres), count)
        weight = self.rng.uniform(0.6, 1.0, (count, 1)).astype(np.float32)
        sigma = self.rng.uniform(0.02, 0.05, (count, 1)).astype(np.float32)
        noise = self.rng.standard_normal((count, centres.shape[1]), dtype=np.float32)
        vectors = weight * centres[main] + (1 - weight) * centres[second] + sigma * noise
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors, self._texts(main, second)

    def _texts(self, main: npt.NDArray[np.int64], second: npt.NDArray[np.int64]) -> list[str]:
        """Three quarters of the words from the main topic's text, the rest from the other."""
        draws = self.rng.random((len(main), WORDS_PER_CHUNK))
        split = WORDS_PER_CHUNK * 3 // 4
        texts = []
        for row, (first, other) in enumerate(zip(main, second, strict=True)):
            a, b = self.topics.texts[first], self.topics.texts[other]
            words = [a[int(x * len(a))] for x in draws[row, :split]]
            words += [b[int(x * len(b))] for x in draws[row, split:]]
            texts.append(" ".join(words))
        return texts


def synthetic_articles(
    synth: Synthesiser, chunks: int, batch: int = 100_000
) -> tuple[list[NewArticle], Vectors]:
    """Articles of :data:`CHUNKS_PER_ARTICLE` synthetic chunks each, and all the vectors
    (drawn ``batch`` at a time to keep temporary arrays small)."""
    vectors = np.empty((chunks, synth.topics.vectors.shape[1]), dtype=np.float32)
    texts: list[str] = []
    for start in range(0, chunks, batch):
        drawn, drawn_texts = synth.draw(min(batch, chunks - start))
        vectors[start : start + len(drawn)] = drawn
        texts += drawn_texts
    items = []
    for number, first in enumerate(range(0, chunks, CHUNKS_PER_ARTICLE)):
        rows = slice(first, min(first + CHUNKS_PER_ARTICLE, chunks))
        items.append(_article(f"syn-{number}", texts[rows], vectors[rows]))
    return items, vectors


def _article(article_id: str, texts: list[str], vectors: Vectors) -> NewArticle:
    """One article whose text is its chunks' texts, one per line (offsets exact); each
    chunk is one sentence, whose vector is the chunk's."""
    article = Article.create(f"Synthetic article {article_id}", "\n".join(texts), id=article_id)
    chunks, start = [], 0
    for ordinal, text in enumerate(texts):
        end = start + len(text)
        chunks.append(Chunk(article_id, ordinal, start, end, text, ((start, end),)))
        start = end + 1
    return NewArticle(
        article, chunks, vectors, [vectors[row : row + 1] for row in range(len(chunks))]
    )


def build(
    store: IndexStore, synth: Synthesiser, chunks: int, log: Console
) -> tuple[float, Vectors]:
    """Commit ``chunks`` synthetic chunks as one new version; (seconds, their vectors)."""
    log.print(f"scale: drawing {chunks:,} synthetic chunks")
    items, vectors = synthetic_articles(synth, chunks)
    log.print("scale: committing (SQLite, FAISS, BM25, fsync)")
    with store.writing() as base:
        seconds = timed(lambda: store.commit(base, add=items))
    return seconds, vectors


def exact_top(
    vectors: Vectors, queries: Vectors, k: int, block: int = 100_000
) -> npt.NDArray[np.int64]:
    """Row numbers of each query's ``k`` nearest vectors (inner product), best first;
    computed block by block so that the score matrix stays small."""
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    best_scores = np.zeros((len(queries), 0), dtype=np.float32)
    for start in range(0, len(vectors), block):
        scores = queries @ vectors[start : start + block].T
        top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        best_rows = np.hstack([best_rows, top + start])
        best_scores = np.hstack([best_scores, np.take_along_axis(scores, top, axis=1)])
        keep = np.argsort(-best_scores, axis=1)[:, :k]
        best_rows = np.take_along_axis(best_rows, keep, axis=1)
        best_scores = np.take_along_axis(best_scores, keep, axis=1)
    return best_rows


def resident_bytes() -> int:
    """Resident memory of this process now (VmRSS)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def folder_bytes(path: Path) -> int:
    return (
        sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        if path.is_dir()
        else path.stat().st_size
    )


@dataclass(frozen=True)
class Probe:
    """What a fresh process measured on the stored index."""

    load_s: float
    resident_before: int
    resident_loaded: int
    resident_searched: int
    found: dict[int, list[list[int]]]
    found_short: dict[int, list[list[int]]]
    search_ms: dict[int, list[float]]
    search_two_threads_ms: list[float]
    bm25_ms: list[float]
    hybrid_ms: list[float]
    vector_index: dict[str, Any]


def probe(
    settings: Settings, dimension: int, queries: Vectors, texts: list[str], short: Vectors
) -> Probe:
    """Load the index and search it, as the service would (FAISS threads pinned).

    Run in a fresh process (see :func:`run`) so that its memory is only the service's.
    """
    faiss.omp_set_num_threads(settings.faiss_threads)
    store = IndexStore(settings.index_dir, settings.model_name, dimension)
    before = resident_bytes()
    started = time.perf_counter()
    snapshot = store.load()
    load_s = time.perf_counter() - started
    assert snapshot is not None
    loaded = resident_bytes()
    vectors, lexical = snapshot.vectors, snapshot.lexical

    def each(action: Callable[[int], object], count: int) -> list[float]:
        return [timed(partial(action, i)) * 1000 for i in range(count)]

    default = int(vectors.index.nprobe) if vectors.is_ivf else 0
    found, found_short, search_ms = {}, {}, {}
    for nprobe in sorted({*NPROBES, default}) if vectors.is_ivf else [0]:
        if nprobe:
            vectors.index.nprobe = nprobe
        found[nprobe] = [vectors.search(q, 10)[1].tolist() for q in queries]
        found_short[nprobe] = [vectors.search(q, 10)[1].tolist() for q in short]
        search_ms[nprobe] = each(lambda i: vectors.search(queries[i], 10), len(queries))
    if vectors.is_ivf:
        vectors.index.nprobe = default
    faiss.omp_set_num_threads(2)
    two_threads_ms = each(lambda i: vectors.search(queries[i], 10), len(queries))
    faiss.omp_set_num_threads(settings.faiss_threads)
    retriever = Retriever()
    sample = min(50, len(queries))
    bm25_ms = each(lambda i: lexical.scores(texts[i]), sample)
    hybrid_ms = each(
        lambda i: retriever.retrieve(vectors, lexical, texts[i], queries[i], 5), sample
    )
    return Probe(
        load_s,
        before,
        loaded,
        resident_bytes(),
        found,
        found_short,
        search_ms,
        two_threads_ms,
        bm25_ms,
        hybrid_ms,
        snapshot.manifest["vector_index"],
    )


def run(report: Report, work: Path, *, chunks: int, log: Console) -> None:
    """Build an index of ``chunks`` synthetic chunks, then load and search it in a fresh
    process; recall is checked against exact search over the same vectors."""
    settings = Settings(index_dir=work / "scale", seed_sample_articles=False)
    embedder = Embedder.from_settings(settings.model_copy(update={"embed_backend": "onnx-int8"}))
    topics = real_topics(embedder, 20 if chunks < IVF_MIN_VECTORS else 400, log)
    synth = Synthesiser(topics, seed=0)
    queries, texts = synth.draw(QUERIES)
    short = short_queries(embedder, topics, QUERIES, seed=1)
    store = IndexStore(settings.index_dir, settings.model_name, queries.shape[1])
    build_s, vectors = build(store, synth, chunks, log)
    log.print("scale: loading and searching in a fresh process")
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        measured = pool.submit(probe, settings, vectors.shape[1], queries, texts, short).result()
    rowids = np.arange(1, chunks + 1)  # SQLite numbers the rows of a new table from 1
    recall = {
        kind: {n: _recall(f, rowids[exact_top(vectors, q, 10)]) for n, f in found.items()}
        for kind, q, found in (
            ("synthetic", queries, measured.found),
            ("short", short, measured.found_short),
        )
    }
    small = min(IVF_MIN_VECTORS, chunks)
    flat = VectorIndex.empty(vectors.shape[1])
    flat.add(vectors[:small], np.arange(small, dtype=np.int64))
    faiss.omp_set_num_threads(settings.faiss_threads)
    flat_ms = [timed(partial(flat.search, q, 10)) * 1000 for q in queries[:50]]
    disk = {
        name: folder_bytes(store.directory / "current" / name)
        for name in ("vectors.faiss", "lexical", "records.sqlite")
    }
    _report(report, chunks, build_s, measured, recall, flat_ms, small, disk)
    shutil.rmtree(settings.index_dir, ignore_errors=True)


def _recall(found: list[list[int]], exact: npt.NDArray[np.int64]) -> float:
    """Mean share of the exact top 10 that the search found."""
    hits = [len(set(f) & set(e.tolist())) / 10 for f, e in zip(found, exact, strict=True)]
    return float(np.mean(hits))


def _report(
    report: Report,
    chunks: int,
    build_s: float,
    m: Probe,
    recall: dict[str, dict[int, float]],
    flat_ms: list[float],
    flat_size: int,
    disk: dict[str, int],
) -> None:
    n = f"{chunks:,} chunks"
    params = ", ".join(
        f"{k}={v}" for k, v in m.vector_index.items() if k in ("type", "nlist", "nprobe")
    )
    default = int(m.vector_index.get("nprobe", 0))
    search = p50(m.search_ms[default])
    sweep = [
        Figure(
            BENCH,
            f"IVF nprobe={n}: search p50",
            p50(ms),
            "ms",
            note=f"recall@10 {recall['synthetic'][n]:.3f} synthetic, "
            f"{recall['short'][n]:.3f} short queries",
        )
        for n, ms in m.search_ms.items()
        if n
    ]
    for figure in (
        Figure(BENCH, f"build (one commit), {n}", build_s, "s", note=params),
        Figure(
            BENCH,
            f"vector search p50, {n}",
            search,
            "ms",
            bar="<= 2 ms",
            met=search <= 2.0,
            note=f"p95 {p95(m.search_ms[default]):.2f} ms; k=10; 1 FAISS thread",
        ),
        Figure(
            BENCH,
            "vector search p50, 2 FAISS threads",
            p50(m.search_two_threads_ms),
            "ms",
            note="same queries; threads stay pinned to 1",
        ),
        *(
            Figure(
                BENCH,
                f"recall@10 vs exact, {kind} queries, {n}",
                recall[kind][default],
                "",
                bar=">= 0.95",
                met=recall[kind][default] >= 0.95,
                note=f"{QUERIES} {about}",
            )
            for kind, about in (
                ("synthetic", "held-out draws of the synthetic distribution"),
                ("short", "12-word windows of real chunks: question-like, harder"),
            )
        ),
        Figure(
            BENCH,
            f"index load, {n}",
            m.load_s,
            "s",
            bar="<= 2 s",
            met=m.load_s <= 2.0,
            note="IndexStore.load in a fresh process: SQLite, FAISS and BM25 memory-mapped",
        ),
        Figure(
            BENCH,
            f"exact search p50 at {flat_size:,}",
            p50(flat_ms),
            "ms",
            note="Flat below this size, IVF from it",
        ),
        Figure(BENCH, f"BM25 scoring p50, {n}", p50(m.bm25_ms), "ms"),
        Figure(
            BENCH,
            f"hybrid retrieval p50, {n}",
            p50(m.hybrid_ms),
            "ms",
            note="dense + BM25 + fusion, without the query embedding",
        ),
        Figure(
            BENCH,
            "resident memory per chunk, loaded",
            (m.resident_loaded - m.resident_before) / chunks,
            "B",
            note="files are memory-mapped: pages come in as searches touch them",
        ),
        Figure(
            BENCH,
            "resident memory per chunk, after searches",
            (m.resident_searched - m.resident_before) / chunks,
            "B",
            note="after the searches above (BM25 touches its whole score matrix)",
        ),
        Figure(
            BENCH,
            "disk per chunk",
            sum(disk.values()) / chunks,
            "B",
            note=", ".join(f"{k} {v / chunks:.0f} B" for k, v in disk.items()),
        ),
        *sweep,
    ):
        report.add(figure)
