"""`rag serve` on SIGTERM: stops accepting, finishes the requests in flight (a write
included), then exits 0. Runs the real command in a child process."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from rag.embedding import Embedder
from rag.pipeline import Pipeline
from rag.settings import Settings

API_KEY = "shutdown-key-0b7e"
ASKERS = 3
QUESTIONS = ("What aid did Macron commit?", "Who did Zelenskyy meet in London?")


@dataclass
class Outcome:
    """One request as the client saw it."""

    request_id: str
    sent: float
    done: float
    status: int | None  # None: no response
    error: str = ""


def long_article() -> dict[str, Any]:
    """An article of some 100 passages: embedding it takes seconds, so a SIGTERM sent
    just after it is posted lands while it is being written."""
    sentences = [
        f"Report {n}: the harbour council of Port Ellis met on day {n} and approved "
        f"{n * 7} new moorings, {n % 13} repairs to the north pier and a budget of "
        f"{n * 1000 + 250} euros for lanterns."
        for n in range(1000)
    ]
    return {
        "id": "harbour-council-minutes",
        "title": "Harbour council minutes",
        "text": "\n\n".join(" ".join(sentences[i : i + 10]) for i in range(0, 1000, 10)),
    }


def test_sigterm_finishes_the_requests_in_flight_then_exits_0(
    rag_serve: Callable[..., Any], sample_index_copy: Path, embedder: Embedder
) -> None:
    served = rag_serve(sample_index_copy, env={"RAG_API_KEY": API_KEY, "RAG_LOG_FORMAT": "json"})
    article = long_article()
    asks: list[Outcome] = []
    write: list[Outcome] = []
    write_body: list[dict[str, Any]] = []
    warm = threading.Barrier(ASKERS + 1)

    def asker(number: int) -> None:
        for count in range(10_000):
            request_id = f"ask-{number}-{count}"
            outcome = _request(
                "POST",
                f"{served.url}/ask",
                request_id,
                json={"question": QUESTIONS[count % len(QUESTIONS)]},
            )
            asks.append(outcome)
            if count == 0:
                warm.wait(timeout=120)
            if outcome.error == "ConnectError":  # the service no longer accepts: stop
                return

    def writer() -> None:
        outcome = _request(
            "POST",
            f"{served.url}/articles",
            "write-1",
            json=article,
            headers={"X-API-Key": API_KEY},
            body=write_body,
        )
        write.append(outcome)

    askers = [threading.Thread(target=asker, args=(n,)) for n in range(ASKERS)]
    for thread in askers:
        thread.start()
    warm.wait(timeout=120)  # every asker had an answer: the service is warm
    writing = threading.Thread(target=writer)
    writing.start()
    time.sleep(0.3)  # the write is being embedded now
    sigterm_at = time.monotonic()
    served.process.terminate()  # SIGTERM
    exit_code = served.process.wait(timeout=300)
    writing.join(timeout=60)
    for thread in askers:
        thread.join(timeout=60)

    assert exit_code == 0, served.log_text()[-3000:]
    handled = _handled_request_ids(served.log_text())
    # every ask the service started was answered; the others were refused before starting
    for outcome in asks:
        if outcome.status != 200:
            assert outcome.request_id not in handled, outcome
            assert outcome.error, outcome
    assert sum(o.status == 200 and o.sent < sigterm_at < o.done for o in asks) >= 1, (
        "no ask was in flight at the SIGTERM: the test did not test anything"
    )
    assert any(o.error == "ConnectError" for o in asks), "the service kept accepting"
    # the write was in flight, and finished: all of it is in the index, which is sound
    (posted,) = write
    assert posted.sent < sigterm_at < posted.done, posted
    assert posted.status == 201, posted
    (report,) = write_body
    (added,) = report["added"]
    pipeline = Pipeline.open(
        Settings(index_dir=sample_index_copy, seed_sample_articles=False), embedder
    )
    stored = pipeline.article(article["id"])
    assert stored is not None
    assert stored.text == article["text"]
    assert stored.chunks == added["chunks"] > 50
    assert pipeline.stats()["articles"] == 4
    assert pipeline.refresh() is not None and pipeline.check() == []


def test_sigterm_while_idle_exits_0_at_once(
    rag_serve: Callable[..., Any], sample_index_copy: Path
) -> None:
    served = rag_serve(sample_index_copy)
    started = time.monotonic()

    assert served.stop(timeout_s=60) == 0
    assert time.monotonic() - started < 30
    leftovers = Path(tempfile.gettempdir()).glob(f"newsqa-metrics-*/*_{served.process.pid}.db")
    assert not list(leftovers)


def _request(
    method: str,
    url: str,
    request_id: str,
    body: list[dict[str, Any]] | None = None,
    **options: Any,
) -> Outcome:
    """Send one request on a new connection; what came back, or which error."""
    headers = {"X-Request-ID": request_id, **options.pop("headers", {})}
    sent = time.monotonic()
    try:
        response = httpx.request(method, url, headers=headers, timeout=300, **options)
    except httpx.TransportError as error:
        return Outcome(request_id, sent, time.monotonic(), None, type(error).__name__)
    if body is not None and response.status_code < 300:
        body.append(response.json())
    return Outcome(request_id, sent, time.monotonic(), response.status_code)


def _handled_request_ids(log: str) -> set[str]:
    """Ids of the requests the service's access log says it answered."""
    ids = set()
    for line in log.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("logger") == "api.access":
                ids.add(record["request_id"])
    return ids
