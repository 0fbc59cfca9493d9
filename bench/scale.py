"""Scale: an index of synthetic chunks (a million by default) written through the real
:class:`index.store.EmbeddedStore` and merged into one base segment, as the index of a
long-running service is, then loaded and searched through ``store.view()`` in a fresh
process.

Synthetic vectors are made to look like real ones: real all-MiniLM-L6-v2 embeddings of
news chunks are the topic centres; each synthetic chunk mixes two centres (weights 0.6-1
and the rest) and adds Gaussian noise of a random scale (per-dimension sigma 0.02-0.05,
so its cosine to its main centre spreads over roughly 0.7-0.95), then is normalised.
Its text is words drawn from the same two centres' chunk texts, so BM25 and the vectors
agree on the topic.

Four kinds of queries, none of them in the index: draws of the same distribution, and
12-word windows of the centres' texts, embedded (both near indexed topics); then the
same two around the chunks of news articles *not* used as centres (held-out topics,
which the IVF clusters were not trained on). Recall is measured against exact search
over the vectors the store holds (int8 in the records, so rounded as they are).

The first searches of a fresh process are reported apart from the warm ones: once with
the index files in the page cache (just written), and once in another fresh process
after dropping them from it (``posix_fadvise(DONTNEED)``), so that they come from disk.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import faiss
import numpy as np
import numpy.typing as npt
from rich.console import Console

from bench.common import NEWS_CSV, Figure, Report, p50, p95, timed
from index.protocol import NewArticle, StoreIdentity
from index.records import rounded_chunk_vectors
from index.store import EmbeddedStore, EmbeddedView, MergePolicy
from index.vectors import IVF_MIN_VECTORS, VectorIndex
from rag.articles import create_article, parse_bytes
from rag.embedding import Embedder, vector_space
from rag.pipeline import Pipeline
from rag.retrieval import Retriever
from rag.settings import Settings
from records import Article, Chunk

BENCH = "scale"
CHUNKS_PER_ARTICLE = 10
WORDS_PER_CHUNK = 40
QUERIES = 200
NPROBES = (4, 8, 16, 32, 64)
"""IVF lists probed per search, swept to show the speed/recall trade-off."""
BATCH_ARTICLES = 10_000
"""Articles per write transaction while building (100,000 chunks)."""
NEVER = 2**62
"""A merge policy's ``min_changes`` that no write reaches: the build merges once, forced."""
Vectors = npt.NDArray[np.float32]
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Topics:
    """Real chunk texts and their embeddings: the centres synthetic chunks are drawn around."""

    texts: list[list[str]]
    vectors: Vectors


@dataclass(frozen=True)
class Queries:
    """One kind of query: vectors and the texts BM25 reads."""

    kind: str
    about: str
    vectors: Vectors
    texts: list[str]


def news_articles(count: int) -> list[Article]:
    """The first ``count`` news articles."""
    parsed, _ = parse_bytes(NEWS_CSV.read_bytes(), NEWS_CSV.name)
    return parsed[:count]


def real_topics(embedder: Embedder, articles: list[Article], log: Console, what: str) -> Topics:
    """Embed the chunks of these news articles."""
    chunker = Pipeline(Settings(), embedder).chunker
    texts = [c.text for a in articles for c in chunker.chunk(a)]
    log.print(f"scale: embedding {len(texts)} real chunks as {what}")
    return Topics([t.split() for t in texts], embedder.embed(texts))


def short_queries(
    embedder: Embedder, topics: Topics, count: int, seed: int, kind: str, about: str
) -> Queries:
    """Question-like queries: 12-word windows of real chunks, embedded. Short texts sit
    farther from every passage than a passage does, as questions do, so their neighbours
    spread over more clusters: the harder case for IVF."""
    rng = np.random.default_rng(seed)
    windows = []
    for topic in rng.integers(0, len(topics.texts), count):
        words = topics.texts[topic]
        start = int(rng.integers(0, max(1, len(words) - 12)))
        windows.append(" ".join(words[start : start + 12]))
    return Queries(kind, about, embedder.embed(windows), windows)


def drawn_queries(synth: Synthesiser, count: int, kind: str, about: str) -> Queries:
    """Queries drawn as the synthetic chunks are."""
    vectors, texts = synth.draw(count)
    return Queries(kind, about, vectors, texts)


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
    article = create_article(f"Synthetic article {article_id}", "\n".join(texts), id=article_id)
    chunks, start = [], 0
    for ordinal, text in enumerate(texts):
        end = start + len(text)
        chunks.append(Chunk(article_id, ordinal, start, end, text, ((start, end),)))
        start = end + 1
    return NewArticle(
        article, chunks, vectors, [vectors[row : row + 1] for row in range(len(chunks))]
    )


def build(
    store: EmbeddedStore, synth: Synthesiser, chunks: int, log: Console
) -> tuple[float, float, Vectors]:
    """Write ``chunks`` synthetic chunks in transactions of :data:`BATCH_ARTICLES`
    articles, then merge them into a base segment; (write seconds, merge seconds, the
    vectors as the store holds them)."""
    log.print(f"scale: drawing {chunks:,} synthetic chunks")
    items, vectors = synthetic_articles(synth, chunks)
    log.print("scale: writing (SQLite, then the replay into the view)")
    write_s = 0.0
    for start in range(0, len(items), BATCH_ARTICLES):
        write_s += timed(partial(_write, store, items[start : start + BATCH_ARTICLES]))
    del items
    log.print(f"scale: written in {write_s:.0f} s; merging into a base segment")
    merge_s = timed(partial(store.merge, force=True))
    for start in range(0, len(vectors), 100_000):  # as the records keep them
        vectors[start : start + 100_000] = rounded_chunk_vectors(vectors[start : start + 100_000])
    return write_s, merge_s, vectors


def _write(store: EmbeddedStore, items: list[NewArticle]) -> None:
    with store.writing() as writer:
        writer.add(items)


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
class FirstSearches:
    """The first searches after a fresh process loaded the index, each on its own query."""

    load_s: float
    dense_ms: float
    bm25_ms: float
    hybrid_ms: float


@dataclass(frozen=True)
class Probe:
    """What a fresh process measured on the stored index."""

    first: FirstSearches
    resident_before: int
    resident_loaded: int
    resident_searched: int
    found: dict[str, dict[int, list[list[int]]]]
    """Row ids found, by kind of query and nprobe."""
    search_ms: dict[int, list[float]]
    held_out_ms: list[float]
    held_out_bm25_ms: list[float]
    held_out_hybrid_ms: list[float]
    """Warm searches with the held-out short queries (those of the first searches)."""
    search_two_threads_ms: list[float]
    bm25_ms: list[float]
    hybrid_ms: list[float]
    vector_index: dict[str, Any]


def _load(index_dir: Path, identity: StoreIdentity) -> tuple[EmbeddedView, float]:
    store = EmbeddedStore(index_dir, identity)
    started = time.perf_counter()
    view = store.view()
    load_s = time.perf_counter() - started
    assert view is not None
    return view, load_s


def first_searches(
    view: EmbeddedView, load_s: float, queries: Queries, retriever: Retriever
) -> FirstSearches:
    """Time one dense search, one BM25 scoring and one hybrid retrieval, the first of
    each after the load, on three different queries."""
    vectors, texts = queries.vectors, queries.texts
    return FirstSearches(
        load_s,
        timed(partial(view.dense_search, vectors[0], 10)) * 1000,
        timed(partial(view.lexical_scores, texts[1])) * 1000,
        timed(partial(retriever.retrieve, view, texts[2], vectors[2], 5)) * 1000,
    )


def probe(
    index_dir: Path, identity: StoreIdentity, threads: int, kinds: list[Queries], first: Queries
) -> Probe:
    """Load the index and search it, as the service would (FAISS threads pinned).

    Run in a fresh process (see :func:`run`) so that its memory is only the service's.
    """
    faiss.omp_set_num_threads(threads)
    before = resident_bytes()
    view, load_s = _load(index_dir, identity)
    loaded = resident_bytes()
    retriever = Retriever()
    cold = first_searches(view, load_s, first, retriever)
    index = view.segments.base.vectors

    def each(action: Callable[[int], object], count: int) -> list[float]:
        return [timed(partial(action, i)) * 1000 for i in range(count)]

    default = int(index.index.nprobe) if index.is_ivf else 0
    found: dict[str, dict[int, list[list[int]]]] = {q.kind: {} for q in kinds}
    search_ms = {}
    synthetic = kinds[0].vectors
    for nprobe in sorted({*NPROBES, default}) if index.is_ivf else [0]:
        if nprobe:
            index.index.nprobe = nprobe
        for queries in kinds:
            found[queries.kind][nprobe] = [
                view.dense_search(q, 10)[1].tolist() for q in queries.vectors
            ]
        search_ms[nprobe] = each(lambda i: view.dense_search(synthetic[i], 10), len(synthetic))
    if index.is_ivf:
        index.index.nprobe = default
    held_out, held_out_texts = kinds[-1].vectors, kinds[-1].texts
    held_out_ms = each(lambda i: view.dense_search(held_out[i], 10), len(held_out))
    faiss.omp_set_num_threads(2)
    two_threads_ms = each(lambda i: view.dense_search(synthetic[i], 10), len(synthetic))
    faiss.omp_set_num_threads(threads)
    texts = kinds[0].texts
    sample = min(50, len(texts))
    bm25_ms = each(lambda i: view.lexical_scores(texts[i]), sample)
    hybrid_ms = each(lambda i: retriever.retrieve(view, texts[i], synthetic[i], 5), sample)
    held_out_bm25_ms = each(lambda i: view.lexical_scores(held_out_texts[i]), sample)
    held_out_hybrid_ms = each(
        lambda i: retriever.retrieve(view, held_out_texts[i], held_out[i], 5), sample
    )
    return Probe(
        cold,
        before,
        loaded,
        resident_bytes(),
        found,
        search_ms,
        held_out_ms,
        held_out_bm25_ms,
        held_out_hybrid_ms,
        two_threads_ms,
        bm25_ms,
        hybrid_ms,
        index.description,
    )


def probe_from_disk(
    index_dir: Path, identity: StoreIdentity, threads: int, first: Queries
) -> FirstSearches:
    """Drop the index's files from the page cache, then load it and search it once."""
    faiss.omp_set_num_threads(threads)
    for path in (index_dir / "current").resolve().rglob("*"):
        if path.is_file():
            drop_from_page_cache(path)
    view, load_s = _load(index_dir, identity)
    return first_searches(view, load_s, first, Retriever())


def drop_from_page_cache(path: Path) -> None:
    """Ask the kernel to forget the file's cached pages (written back first), so that
    the next read comes from disk; a hint, which needs no privileges."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def in_fresh_process(function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call ``function`` in a new (spawned) Python process."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(function, *args, **kwargs).result()


def run(report: Report, work: Path, *, chunks: int, log: Console) -> None:
    """Build an index of ``chunks`` synthetic chunks, then load and search it in fresh
    processes; recall is checked against exact search over the same vectors."""
    settings = Settings(index_dir=work / "scale", seed_sample_articles=False)
    embedder = Embedder.from_settings(settings.model_copy(update={"embed_backend": "onnx-int8"}))
    centres = 20 if chunks < IVF_MIN_VECTORS else 400
    articles = news_articles(centres + centres // 4)
    topics = real_topics(embedder, articles[:centres], log, "topic centres")
    held_out = real_topics(embedder, articles[centres:], log, "held-out topics")
    synth = Synthesiser(topics, seed=0)
    held_out_short = short_queries(
        embedder,
        held_out,
        QUERIES,
        3,
        "held-out short",
        "12-word windows of other articles' chunks",
    )
    kinds = [
        drawn_queries(synth, QUERIES, "synthetic", "held-out draws of the synthetic distribution"),
        short_queries(
            embedder,
            topics,
            QUERIES,
            1,
            "short",
            "12-word windows of the centres' chunks: question-like, harder",
        ),
        drawn_queries(
            Synthesiser(held_out, seed=2),
            QUERIES,
            "held-out topics",
            "draws around chunks of other articles",
        ),
        held_out_short,
    ]
    identity = StoreIdentity(
        settings.model_name,
        embedder.dimension,
        embedder.backend,
        vector_space(embedder.backend),
    )
    store = EmbeddedStore(settings.index_dir, identity, MergePolicy(NEVER, background=False))
    write_s, merge_s, vectors = build(store, synth, chunks, log)
    store.close()
    del store  # and the writer's view of every chunk, which the probes do not need
    threads = settings.faiss_threads
    log.print("scale: loading and searching in a fresh process")
    measured = in_fresh_process(probe, settings.index_dir, identity, threads, kinds, held_out_short)
    log.print("scale: the first searches again, the index dropped from the page cache")
    from_disk = in_fresh_process(
        probe_from_disk, settings.index_dir, identity, threads, _shifted(held_out_short)
    )
    rowids = np.arange(1, chunks + 1)  # SQLite numbers the rows of a new table from 1
    recall = {
        q.kind: {
            n: recall_at_10(f, rowids[exact_top(vectors, q.vectors, 10)])
            for n, f in measured.found[q.kind].items()
        }
        for q in kinds
    }
    small = min(IVF_MIN_VECTORS, chunks)
    flat = VectorIndex.empty(vectors.shape[1])
    flat.add(vectors[:small], np.arange(small, dtype=np.int64))
    faiss.omp_set_num_threads(threads)
    flat_ms = [timed(partial(flat.search, q, 10)) * 1000 for q in kinds[0].vectors[:50]]
    disk = _disk(settings.index_dir / "current")
    _report(
        report, chunks, (write_s, merge_s), measured, from_disk, kinds, recall, flat_ms, small, disk
    )
    shutil.rmtree(settings.index_dir, ignore_errors=True)


def _shifted(queries: Queries) -> Queries:
    """The same kind of queries, other ones (the page cache holds what earlier ones read)."""
    return Queries(queries.kind, queries.about, queries.vectors[3:], queries.texts[3:])


def _disk(store: Path) -> dict[str, int]:
    """Bytes of the records (with their WAL) and of the base segment in use."""
    segment = store / "segments" / (store / "segments" / "CURRENT").read_text().strip()
    return {
        "records.sqlite": sum(folder_bytes(p) for p in store.glob("records.sqlite*")),
        "vectors.faiss": folder_bytes(segment / "vectors.faiss"),
        "lexical": folder_bytes(segment / "lexical"),
    }


def recall_at_10(found: list[list[int]], exact: npt.NDArray[np.int64]) -> float:
    """Mean share of the exact top 10 that the search found."""
    hits = [len(set(f) & set(e.tolist())) / 10 for f, e in zip(found, exact, strict=True)]
    return float(np.mean(hits))


def _report(
    report: Report,
    chunks: int,
    build_s: tuple[float, float],
    m: Probe,
    from_disk: FirstSearches,
    kinds: list[Queries],
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
            note="recall@10 " + ", ".join(f"{recall[q.kind][n]:.3f} {q.kind}" for q in kinds),
        )
        for n, ms in m.search_ms.items()
        if n
    ]
    write_s, merge_s = build_s
    cold = m.first
    warm = {
        "dense": p50(m.held_out_ms),
        "bm25": p50(m.held_out_bm25_ms),
        "hybrid": p50(m.held_out_hybrid_ms),
    }
    for figure in (
        Figure(
            BENCH,
            f"build: writes, {n}",
            write_s,
            "s",
            note=f"transactions of {BATCH_ARTICLES * CHUNKS_PER_ARTICLE:,} chunks, "
            "and their replay into the writer's view",
        ),
        Figure(BENCH, f"build: merge into a base segment, {n}", merge_s, "s", note=params),
        Figure(
            BENCH,
            f"vector search p50, {n}",
            search,
            "ms",
            bar="<= 2 ms",
            met=search <= 2.0,
            note=f"p95 {p95(m.search_ms[default]):.2f} ms; k=10; 1 FAISS thread; warm",
        ),
        Figure(
            BENCH,
            "vector search p50, held-out short queries",
            p50(m.held_out_ms),
            "ms",
            note=f"p95 {p95(m.held_out_ms):.2f} ms; queries about topics not in the index",
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
                f"recall@10 vs exact, {q.kind} queries, {n}",
                recall[q.kind][default],
                "",
                bar=">= 0.95",
                met=recall[q.kind][default] >= 0.95,
                note=f"{len(q.vectors)} {q.about}",
            )
            for q in kinds
        ),
        Figure(
            BENCH,
            f"index load, {n}",
            cold.load_s,
            "s",
            bar="<= 2 s",
            met=cold.load_s <= 2.0,
            note="store.view() in a fresh process: SQLite opened, FAISS and BM25 memory-mapped",
        ),
        Figure(
            BENCH,
            f"index load from disk, {n}",
            from_disk.load_s,
            "s",
            note="the same, after dropping the index's files from the page cache",
        ),
        *(
            Figure(
                BENCH,
                f"first {label} after load, {where}",
                value,
                "ms",
                note=f"warm p50 {warm[key]:.2f} ms for the same kind of query "
                "(12-word windows of held-out articles)",
            )
            for where, first in (("page cache warm", cold), ("from disk", from_disk))
            for label, key, value in (
                ("vector search", "dense", first.dense_ms),
                ("BM25 scoring", "bm25", first.bm25_ms),
                ("hybrid retrieval", "hybrid", first.hybrid_ms),
            )
        ),
        Figure(
            BENCH,
            f"exact search p50 at {flat_size:,}",
            p50(flat_ms),
            "ms",
            note="Flat below this size, IVF from it",
        ),
        Figure(
            BENCH,
            f"BM25 scoring p50, {n}",
            p50(m.bm25_ms),
            "ms",
            note=f"40-word synthetic texts; {warm['bm25']:.2f} ms for 12-word windows",
        ),
        Figure(
            BENCH,
            f"hybrid retrieval p50, {n}",
            p50(m.hybrid_ms),
            "ms",
            note="dense + BM25 + fusion, without the query embedding; "
            f"{warm['hybrid']:.2f} ms for 12-word windows",
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
            note="after the searches above (BM25 reads the postings of every query term)",
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
