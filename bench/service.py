"""The service over HTTP (``bench/http_latency.py`` drives it): start-up time to a healthy
``/health``, ``POST /ask`` latency against the bare encoder's single-query p50 measured in
the same run, and where the time of one ``/ask`` goes (timed in process)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from rich.console import Console

from bench import http_latency
from bench.common import Figure, Report, p50, p95, timed
from rag.embedding import Embedder
from rag.pipeline import Pipeline
from rag.settings import Settings

STARTUP = "startup"
HTTP = "http"
STARTUP_BAR_S = 5.0
LATENCY_CEILING = 6.0
"""Most ``/ask`` may cost over the bare question encoder: the span reader reads the best
four passages (about four 256-token windows) on top of encoding the question."""
STARTS = 3
QUESTIONS = (
    "What aid did Macron commit?",
    "How many Ukrainian soldiers is France training?",
    "Which Russian factories does Zelensky want to strike?",
    "What did Zelensky tell EU leaders in Brussels?",
    "Who cast the tie-breaking vote?",
    "What did the Senate vote on?",
    "Which outlet reported the election result?",
    "What is the boiling point of liquid nitrogen?",
)


def sample_index(work: Path) -> Path:
    """An index of the sample articles (built in process, as ``rag serve`` would)."""
    settings = Settings(index_dir=work / "sample-index")
    Pipeline.open(settings)
    return settings.index_dir


SERVICE_VARIANTS: dict[str, dict[str, str]] = {
    "torch, 2 threads": {"RAG_EMBED_BACKEND": "torch", "RAG_TORCH_THREADS": "2"},
    "torch, 1 thread": {"RAG_EMBED_BACKEND": "torch", "RAG_TORCH_THREADS": "1"},
    "torch, 1 thread, no query batching": {
        "RAG_EMBED_BACKEND": "torch",
        "RAG_TORCH_THREADS": "1",
        "RAG_QUERY_BATCH_MAX": "1",
    },
    "onnx, 1 thread": {"RAG_EMBED_BACKEND": "onnx", "RAG_TORCH_THREADS": "1"},
}
"""Ways to run the service over the same (PyTorch-built) index: float32 ONNX vectors are
compatible with it, so the query encoder can change without re-embedding anything. The
variant without query batching is the "before" of :mod:`rag.batching`."""


def run_startup(report: Report, work: Path, *, tiny: bool, log: Console) -> None:
    """Seconds from launching ``rag serve`` to ``/health`` answering 200 (index exists),
    with the PyTorch backend (the default) and with ONNX Runtime (no PyTorch import)."""
    index_dir = sample_index(work)
    starts = 1 if tiny else STARTS
    for variant in ("torch, 2 threads", "onnx, 1 thread"):
        with environment(SERVICE_VARIANTS[variant]):
            seconds = [_time_to_health(index_dir) for _ in range(starts)]
        log.print(f"startup, {variant}: {', '.join(f'{s:.2f}' for s in seconds)} s")
        report.add(
            Figure(
                STARTUP,
                f"start-up to /health 200, sample index, {variant.split(',')[0]}",
                p50(seconds),
                "s",
                bar=f"<= {STARTUP_BAR_S:g} s",
                met=p50(seconds) <= STARTUP_BAR_S,
                note=f"median of {starts}; /health polled every 0.25 s",
            )
        )


def _time_to_health(index_dir: Path) -> float:
    started = time.perf_counter()
    with http_latency.running_service(index_dir):
        return time.perf_counter() - started  # leaving the block stops the service


def bare_query_p50(repeats: int, variables: dict[str, str]) -> float:
    """p50 ms of the bare encoder on one question, on the same backend and threads as the
    service variant (its ``RAG_*`` variables): the floor a question cannot go below."""
    settings = Settings.model_validate(
        {
            "embed_backend": variables.get("RAG_EMBED_BACKEND", "torch"),
            "torch_threads": variables.get("RAG_TORCH_THREADS", "2"),
        }
    )
    encoder = Embedder.from_settings(settings).encoder
    questions = (QUESTIONS * repeats)[:repeats]
    return p50([timed(partial(encoder.encode, [q])) * 1000 for q in questions])


@contextmanager
def environment(variables: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``variables`` set (the service started inside inherits them)."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_http(report: Report, indexes: dict[str, Path], *, tiny: bool, log: Console) -> None:
    """Sequential and concurrent ``POST /ask`` per index and service variant, each against
    the bare encoder's single-query p50 measured just before it."""
    requests, concurrent, clients = (5, 8, 2) if tiny else (100, 200, 8)
    variants = list(SERVICE_VARIANTS.items())[: 1 if tiny else None]
    for name, index_dir in indexes.items():
        for variant, variables in variants:
            floor = bare_query_p50(20 if tiny else 100, variables)
            with environment(variables), http_latency.running_service(index_dir) as url:
                http_latency.measure(url, "warm-up", 5, 1)
                sequential = http_latency.measure(url, "sequential", requests, 1)
                parallel = http_latency.measure(url, "concurrent", concurrent, clients)
            seq = p50(sequential.latencies_ms)
            label = f"{name}, {variant}"
            log.print(f"http: {label}: /ask p50 {seq:.1f} ms, encoder floor {floor:.1f} ms")
            report.add(
                Figure(
                    HTTP,
                    f"{label}: /ask p50 / bare encoder p50",
                    seq / floor,
                    "x",
                    bar=f"<= {LATENCY_CEILING:g}x",
                    met=seq / floor <= LATENCY_CEILING,
                    note=f"/ask p50 {seq:.1f} ms (p95 {p95(sequential.latencies_ms):.1f}), "
                    f"encoder {floor:.1f} ms; {requests} sequential requests",
                )
            )
            report.add(
                Figure(
                    HTTP,
                    f"{label}: /ask with {clients} clients",
                    concurrent / parallel.wall_s,
                    "req/s",
                    note=f"p50 {p50(parallel.latencies_ms):.0f} ms, p95 "
                    f"{p95(parallel.latencies_ms):.0f} ms; sequential "
                    f"{requests / sequential.wall_s:.1f} req/s",
                )
            )


class Stopwatch:
    """Adds up the wall-clock time of chosen methods of live objects (by wrapping them)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def watch(self, owner: object, method: str, part: str) -> None:
        original = getattr(owner, method)
        self.seconds[part] = 0.0

        def timed_call(*args: object, **kwargs: object) -> object:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[part] += time.perf_counter() - started

        setattr(owner, method, timed_call)


def run_profile(report: Report, index_dir: Path, name: str) -> None:
    """Where the time of ``Pipeline.ask`` (all of ``/ask`` but HTTP) goes, for questions
    asked the first time (cold) and again (warm); PyTorch on one thread."""
    settings = Settings(index_dir=index_dir, seed_sample_articles=False, torch_threads=1)
    pipeline = Pipeline.open(settings)
    pipeline.ask("warm up the model")
    view = pipeline.refresh()
    assert view is not None
    watch = Stopwatch()
    watch.watch(pipeline.embedder, "embed_query", "query embedding")
    watch.watch(pipeline.retriever, "retrieve", "retrieval (FAISS + BM25 + fusion)")
    watch.watch(pipeline.answerer, "candidates", "answering (reader or sentence scoring)")
    watch.watch(view, "sentence_vectors", "SQLite: sentence vectors")
    watch.watch(view, "chunks", "SQLite: chunks")
    watch.watch(view, "article", "SQLite: articles")
    for label in ("cold", "warm"):
        watch.seconds = dict.fromkeys(watch.seconds, 0.0)
        total = timed(lambda: [pipeline.ask(question) for question in QUESTIONS])
        per_question = 1000 * total / len(QUESTIONS)
        report.add(Figure(HTTP, f"{name} ask {label}: total", per_question, "ms"))
        for part, seconds in watch.seconds.items():
            report.add(
                Figure(
                    HTTP,
                    f"{name} ask {label}: {part}",
                    1000 * seconds / len(QUESTIONS),
                    "ms",
                    note=f"{100 * seconds / total:.0f}% of the total",
                )
            )
