"""Prometheus metrics of the service, served at ``/metrics`` (``prometheus-client``).

One :class:`ServiceMetrics` per app holds every metric in its own registry. With several
worker processes (``rag serve --workers N``) each worker writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` (the client library's multiprocess mode, chosen when that
variable is set before ``prometheus_client`` is first imported), and whichever worker
answers a scrape adds up every worker's files: counters and histograms are sums over the
workers, the index gauges the most recent value any worker saw.

A future PostgreSQL store adds its pool gauges and database error counter here, observed
through the pipeline's public methods like the index gauges below.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

from api.models import IndexStats
from rag.types import AskResult, IngestReport

MULTIPROCESS = values.ValueClass is not values.MutexValue
"""Whether values live in ``PROMETHEUS_MULTIPROC_DIR`` (it was set when the client
library was imported) rather than in this process's memory."""
PREFIX = "newsqa"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SCORE_BUCKETS = tuple(round(0.1 * step, 1) for step in range(1, 11))
WRITE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


class ServiceMetrics:
    """The service's metrics, and what observes them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        route = ["method", "route", "status"]
        self.requests = Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests answered, by method, route template and status.",
            route,
            registry=registry,
        )
        self.request_seconds = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time from a request's arrival to the last byte of its response.",
            route,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.questions = Counter(
            f"{PREFIX}_questions",
            "Questions asked, by outcome: answered, or abstained (no answer above the threshold).",
            ["outcome"],
            registry=registry,
        )
        self.answer_score = Histogram(
            f"{PREFIX}_answer_score",
            "Calibrated score of the best answer of each answered question.",
            buckets=SCORE_BUCKETS,
            registry=registry,
        )
        self.stage_seconds = Histogram(
            f"{PREFIX}_question_stage_seconds",
            "Time spent in each stage of a question: encode (the question vector), "
            "retrieve (the passages), read (the answerer on them).",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self.index_articles = Gauge(
            f"{PREFIX}_index_articles",
            "Articles in the current index version.",
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.index_chunks = Gauge(
            f"{PREFIX}_index_chunks",
            "Chunks (passages) in the current index version.",
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.index_generation = Gauge(
            f"{PREFIX}_index_generation",
            "Generation of the current index version (one more per committed write).",
            multiprocess_mode="max",
            registry=registry,
        )
        self.ingested_articles = Counter(
            f"{PREFIX}_ingest_articles",
            "Articles added over HTTP.",
            registry=registry,
        )
        self.ingested_chunks = Counter(
            f"{PREFIX}_ingest_chunks",
            "Chunks embedded and added over HTTP.",
            registry=registry,
        )
        self.ingest_throughput = Gauge(
            f"{PREFIX}_ingest_chunks_per_second",
            "Chunks per second of the latest write that added any (parsing, embedding and commit).",
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.write_seconds = Histogram(
            f"{PREFIX}_index_write_duration_seconds",
            "Time of each write to the index over HTTP, from parsing to commit, by "
            "operation: add or delete.",
            ["operation"],
            buckets=WRITE_BUCKETS,
            registry=registry,
        )
        self.index_errors = Counter(
            f"{PREFIX}_index_errors",
            "Requests that failed because the index could not be read (answered 503).",
            registry=registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method, route, str(status))
        self.requests.labels(*labels).inc()
        self.request_seconds.labels(*labels).observe(seconds)

    def observe_stage(self, stage: str, seconds: float) -> None:
        """A :data:`rag.pipeline.StageCallback`."""
        self.stage_seconds.labels(stage).observe(seconds)

    def observe_answer(self, result: AskResult) -> None:
        if result.answers:
            self.questions.labels("answered").inc()
            self.answer_score.observe(result.answers[0].score)
        else:
            self.questions.labels("abstained").inc()

    def observe_write(self, operation: str, seconds: float, report: IngestReport | None) -> None:
        """A write that took ``seconds``; ``report`` is what an add did."""
        self.write_seconds.labels(operation).observe(seconds)
        if report is None or not report.added:
            return
        self.ingested_articles.inc(len(report.added))
        self.ingested_chunks.inc(report.chunks_added)
        if seconds > 0:
            self.ingest_throughput.set(report.chunks_added / seconds)

    def observe_index(self, stats: IndexStats) -> None:
        self.index_articles.set(stats.articles)
        self.index_chunks.set(stats.chunks)
        self.index_generation.set(stats.generation)

    def exposition(self) -> tuple[bytes, str]:
        """The text a scrape gets, and its content type: every worker's values in
        multiprocess mode, this registry's otherwise."""
        if MULTIPROCESS:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
