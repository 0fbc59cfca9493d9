"""Embedding backends side by side: PyTorch, ONNX Runtime float32 and int8.

For each: ingest throughput of the whole pipeline on the same news articles, single-query
latency (queries interleaved across backends so that drift hits all alike), and SQuAD
recall@5 measured with the evaluation harness on a fixed sample of questions.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from rich.console import Console

from bench.common import SQUAD_JSON, Figure, Report, p50, ratio_figure, timed
from bench.ingest import news_subset
from eval.clients import InProcessAnswerer
from eval.corpus import cached_pipeline
from eval.datasets import QuestionSet, load_squad
from eval.harness import RunOptions, VariantResult, ask_all
from rag.embedding import Embedder
from rag.pipeline import Pipeline
from rag.settings import EmbedBackend, Settings

BENCH = "backends"
BACKENDS: tuple[EmbedBackend, ...] = ("torch", "onnx", "onnx-int8")
SPEED_FLOOR = 2.0
RECALL_POINTS = 1.0
QUERIES = (
    "What aid did Macron commit?",
    "Who cast the tie-breaking vote for the education secretary?",
    "How many people were killed in the attack?",
    "When will the new trade agreement take effect?",
    "What did the central bank decide about interest rates?",
)


@dataclass(frozen=True)
class Sizes:
    """How much each measurement uses (smaller in the smoke test)."""

    ingest_articles: int
    rounds: int
    queries: int
    squad_questions: int
    squad_articles: int | None


FULL = Sizes(ingest_articles=100, rounds=2, queries=60, squad_questions=500, squad_articles=None)
TINY = Sizes(ingest_articles=3, rounds=1, queries=5, squad_questions=3, squad_articles=1)


def run(report: Report, work: Path, *, tiny: bool, log: Console) -> None:
    sizes = TINY if tiny else FULL
    embedders = {}
    for backend in BACKENDS:
        embedder = Embedder.from_settings(_settings(work, backend))
        load_s = timed(embedder.warm_up)
        log.print(f"backends: {backend} ready in {load_s:.1f} s (ONNX export on first use)")
        embedders[backend] = embedder
    ingest = _ingest_throughput(embedders, work, sizes)
    query = _query_latency(embedders, sizes.queries)
    recall = {b: _squad_recall(e, work, sizes, log) for b, e in embedders.items()}
    for backend in BACKENDS:
        report.add(Figure(BENCH, f"{backend}: ingest", ingest[backend], "chunks/s"))
        report.add(Figure(BENCH, f"{backend}: query embedding p50", query[backend], "ms"))
        report.add(Figure(BENCH, f"{backend}: SQuAD recall@5", recall[backend], ""))
    for backend in BACKENDS[1:]:
        speed = ingest[backend] / ingest["torch"]
        report.add(ratio_figure(BENCH, f"{backend} / torch ingest", speed, SPEED_FLOOR))
        faster = query[backend] < query["torch"]
        report.add(
            Figure(
                BENCH,
                f"{backend} / torch query p50",
                query[backend] / query["torch"],
                "x",
                bar="< 1x",
                met=faster,
            )
        )
        points = (recall[backend] - recall["torch"]) * 100
        report.add(
            Figure(
                BENCH,
                f"{backend} - torch recall@5",
                points,
                "points",
                bar=f"within {RECALL_POINTS:g}",
                met=abs(points) <= RECALL_POINTS,
                note=f"{sizes.squad_questions} SQuAD questions (test split), same for all",
            )
        )


def _settings(work: Path, backend: EmbedBackend) -> Settings:
    return Settings(
        index_dir=work / f"backend-{backend}", seed_sample_articles=False, embed_backend=backend
    )


def _ingest_throughput(
    embedders: dict[EmbedBackend, Embedder], work: Path, sizes: Sizes
) -> dict[EmbedBackend, float]:
    """Chunks/s of the whole pipeline per backend, best of ``rounds`` interleaved runs."""
    data = news_subset(sizes.ingest_articles, work)
    best: dict[EmbedBackend, float] = {}
    for _ in range(sizes.rounds):
        for backend, embedder in embedders.items():
            settings = _settings(work, backend)
            pipeline = Pipeline(settings, embedder)
            seconds = timed(partial(pipeline.ingest, [data]))
            view = pipeline.refresh()
            assert view is not None
            rate = view.chunks_count / seconds
            pipeline.close()
            shutil.rmtree(settings.index_dir)
            best[backend] = max(best.get(backend, 0.0), rate)
    return best


def _query_latency(
    embedders: dict[EmbedBackend, Embedder], count: int
) -> dict[EmbedBackend, float]:
    """p50 milliseconds to embed one question, the backends taking turns on each query."""
    times: dict[EmbedBackend, list[float]] = {b: [] for b in embedders}
    for number in range(count + 3):
        question = QUERIES[number % len(QUERIES)] + f" ({number})"
        for backend, embedder in embedders.items():
            seconds = timed(partial(embedder.embed_query, question))
            if number >= 3:  # the first few warm caches up
                times[backend].append(seconds * 1000)
    return {b: p50(t) for b, t in times.items()}


def _squad_recall(embedder: Embedder, work: Path, sizes: Sizes, log: Console) -> float:
    """recall@5 of the harness on a fixed SQuAD sample, over an index built by this backend."""
    squad = load_squad(SQUAD_JSON)
    if sizes.squad_articles is not None:
        kept = squad.articles[: sizes.squad_articles]
        ids = {a.id for a in kept}
        examples = tuple(e for e in squad.examples if e.article in ids)
        squad = QuestionSet(squad.name, examples, kept, f"{squad.fingerprint}-{len(kept)}")
    questions = squad.select("test", sizes.squad_questions, seed=0)
    settings = _settings(work, embedder.backend)
    log.print(f"backends: SQuAD recall@5 with {embedder.backend}")
    pipeline = cached_pipeline(
        settings,
        embedder,
        work / f"squad-{embedder.backend}",
        "squad",
        squad.fingerprint,
        squad.articles,
    )
    options = RunOptions(top_k=5, depth=5)
    results = ask_all(InProcessAnswerer(pipeline), questions.examples, options)
    recall = VariantResult.of(embedder.backend, "squad", "test", results).metrics.recall[5]
    return float(recall or 0.0)
