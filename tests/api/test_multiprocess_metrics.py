"""`rag serve --workers 2`: /metrics adds up both workers (the Prometheus client's
multiprocess mode), whichever worker answers the scrape."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

QUESTION = "What aid did Macron commit?"
ROUND = 4
DEADLINE_S = 180.0


def questions_by_worker(metrics_dir: Path, scratch: Path) -> Counter[str]:
    """Questions counted by each worker process, read from its own files alone."""
    counts: Counter[str] = Counter()
    pids = {path.stem.rsplit("_", 1)[1] for path in metrics_dir.glob("*.db")}
    for pid in pids:
        alone = scratch / pid
        alone.mkdir(parents=True, exist_ok=True)
        for path in metrics_dir.glob(f"*_{pid}.db"):
            shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        counts[pid] = int(_total(registry.collect(), "newsqa_questions_total"))
    return counts


def test_metrics_add_up_across_two_workers(
    rag_serve: Callable[..., Any], sample_index_copy: Path, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "prometheus"
    served = rag_serve(
        sample_index_copy, "--workers", "2", env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    )
    answered = 0
    by_worker: Counter[str] = Counter()
    deadline = time.monotonic() + DEADLINE_S
    # ask in rounds of concurrent requests, each on a new connection, until both workers
    # have answered some (a worker still loading answers 503: not counted)
    with ThreadPoolExecutor(ROUND) as pool:
        while sum(1 for count in by_worker.values() if count) < 2:
            assert time.monotonic() < deadline, f"one worker answered everything: {by_worker}"
            statuses = pool.map(lambda _: _ask(served.url), range(ROUND))
            answered += sum(1 for status in statuses if status == 200)
            by_worker = questions_by_worker(metrics_dir, tmp_path / f"scratch-{answered}")

    scrapes = [httpx.get(f"{served.url}/metrics", timeout=30) for _ in range(6)]

    assert sum(by_worker.values()) == answered
    for scrape in scrapes:  # the same totals from whichever worker answered
        assert scrape.status_code == 200
        families = list(text_string_to_metric_families(scrape.text))
        assert _total(families, "newsqa_questions_total") == answered
        assert _total(families, "newsqa_question_stage_seconds_count", stage="encode") == answered
        asks = {"method": "POST", "route": "/ask", "status": "200"}
        assert _total(families, "newsqa_http_requests_total", **asks) == answered
        assert _total(families, "newsqa_http_request_duration_seconds_count", **asks) == answered
        assert _total(families, "newsqa_index_articles") == 3  # a gauge: not summed
    assert served.stop() == 0  # SIGTERM to the supervisor: both workers stop, exit 0


def _ask(url: str) -> int:
    response = httpx.post(f"{url}/ask", json={"question": QUESTION}, timeout=120)
    return response.status_code


def _total(families: Any, name: str, **labels: str) -> float:
    """The sum over the samples named ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(
        sample.value
        for family in families
        for sample in family.samples
        if sample.name == name and wanted <= set(sample.labels.items())
    )
