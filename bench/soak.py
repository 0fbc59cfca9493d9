"""Soak test: several worker processes over one index, many clients reading and writing.

Starts ``rag serve --workers N`` on a free 127.0.0.1 port over a fresh index of the sample
articles (a temporary directory) with a random RAG_API_KEY, then runs concurrent clients
for a fixed time. Each client repeats a cycle of 20 requests: 17 ``POST /ask``, 2 article
adds (``POST /articles``) and 1 delete of its own oldest article. After every write the
client polls ``GET /articles/{id}`` on fresh connections (which land on either worker)
until all of them agree, and records how long that took (the visibility lag).

Afterwards it checks that nothing was lost: every added, undeleted article is listed,
readable and found by a question about it, every deleted one is 404, and ``rag check``
passes on the index directory. Prints a table and writes JSON to bench/results/.
Loopback only; bounded by ``--duration`` and ``--max-requests``; exits 1 when a
correctness check fails (the visibility bar is reported, not enforced).

    .venv/bin/python -m bench.soak [--duration 60] [--clients 16] [--workers 2] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from api.app import READY_MESSAGE
from bench.common import RESULTS_DIR, p50, p95
from bench.http_latency import free_port

RAG = Path(sys.executable).with_name("rag")
SAMPLE_QUESTIONS = (
    "What aid did Macron commit?",
    "How many Ukrainian soldiers is France training?",
    "Which Russian factories does Zelensky want to strike?",
    "What did Zelensky tell EU leaders in Brussels?",
    "What is the boiling point of liquid nitrogen?",
)
CYCLE = 20
ADD_AT = (0, 10)
DELETE_AT = 2
PROBE_CONNECTIONS = 4
VISIBILITY_BAR_S = 2.0
PROBE_GIVE_UP_S = 10.0
REQUEST_TIMEOUT_S = 120.0
STARTUP_TIMEOUT_S = 300.0
SYLLABLES = ("ka", "lo", "mi", "ru", "te", "vo", "zan", "pel", "dor", "fi")


@dataclass(frozen=True)
class SoakArticle:
    """A generated article with a made-up place name that no other article mentions."""

    id: str
    place: str

    @staticmethod
    def make(client: int, number: int) -> SoakArticle:
        digits = f"{client:02d}{number:05d}"
        place = "Qu" + "".join(SYLLABLES[int(d)] for d in digits)
        return SoakArticle(id=f"soak-c{client:02d}-{number:05d}", place=place)

    @property
    def cost(self) -> str:
        return f"{len(self.place) * 37 + 1000:,} crowns"

    def record(self) -> dict[str, str]:
        return {
            "id": self.id,
            "title": f"{self.place} approves a lantern bridge",
            "text": f"The harbour council of {self.place} approved a new lantern bridge on "
            f"Tuesday. Officials in {self.place} said the bridge will cost {self.cost}. "
            "Fishermen welcomed the decision and the works start in spring.",
            "source": "soak",
        }

    @property
    def question(self) -> str:
        return f"How much will the {self.place} lantern bridge cost?"


@dataclass(frozen=True)
class Sample:
    """One request as the client saw it; ``error`` is set when it failed."""

    kind: str
    status: int | None
    latency_ms: float
    error: str | None = None


@dataclass
class Ledger:
    """Everything the clients did, shared between their threads."""

    samples: list[Sample] = field(default_factory=list)
    live: dict[str, SoakArticle] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    lags_s: list[float] = field(default_factory=list)
    first_look: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, sample: Sample) -> None:
        with self.lock:
            self.samples.append(sample)


@dataclass
class Consistency:
    """What the checks after the run found (every list empty when all is well)."""

    missing: list[str] = field(default_factory=list)
    wrong_text: list[str] = field(default_factory=list)
    not_found_by_question: list[str] = field(default_factory=list)
    deleted_but_present: list[str] = field(default_factory=list)
    unexpected_listed: list[str] = field(default_factory=list)
    index_check: str = ""

    @property
    def ok(self) -> bool:
        problems = [self.missing, self.wrong_text, self.not_found_by_question]
        problems += [self.deleted_but_present, self.unexpected_listed]
        return not any(problems) and self.index_check.startswith("ok")


class SoakClient:
    """One client: a keep-alive connection running the request cycle until the deadline."""

    def __init__(self, number: int, url: str, key: str, ledger: Ledger) -> None:
        self.number = number
        self.url = url
        self.headers = {"X-API-Key": key}
        self.ledger = ledger
        self.mine: list[SoakArticle] = []
        self.articles = (SoakArticle.make(number, n) for n in itertools.count())

    def run(self, deadline: float, budget: Callable[[], bool]) -> None:
        with httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S) as http:
            for step in itertools.count():
                if time.monotonic() >= deadline or not budget():
                    return
                position = step % CYCLE
                if position in ADD_AT:
                    self.add(http)
                elif position == DELETE_AT and self.mine:
                    self.delete(http)
                else:
                    self.ask(http, step)

    def ask(self, http: httpx.Client, step: int) -> None:
        own = [a.question for a in self.mine]
        questions = [*SAMPLE_QUESTIONS, *own]
        body = {"question": questions[step % len(questions)], "top_k": 5}
        self.call("ask", 200, lambda: http.post("/ask", json=body), check=torn_answer)

    def add(self, http: httpx.Client) -> None:
        article = next(self.articles)
        added = self.call(
            "add", 201, lambda: http.post("/articles", json=article.record(), headers=self.headers)
        )
        if added is None:
            return
        self.mine.append(article)
        with self.ledger.lock:
            self.ledger.live[article.id] = article
        self.probe(article.id, 200)

    def delete(self, http: httpx.Client) -> None:
        article = self.mine.pop(0)
        url = f"/articles/{article.id}"
        if self.call("delete", 204, lambda: http.delete(url, headers=self.headers)) is None:
            return
        with self.ledger.lock:
            del self.ledger.live[article.id]
            self.ledger.deleted.add(article.id)
        self.probe(article.id, 404)

    def probe(self, article_id: str, expected: int) -> None:
        """Record the time until a round of fresh connections (either worker) all answer
        ``expected``: an upper bound on the lag, since it includes the round itself."""
        written = time.monotonic()
        rounds = 0
        while True:
            rounds += 1
            statuses = [self.fresh_get(article_id) for _ in range(PROBE_CONNECTIONS)]
            lag = time.monotonic() - written
            if all(status == expected for status in statuses) or lag > PROBE_GIVE_UP_S:
                break
        with self.ledger.lock:
            self.ledger.lags_s.append(lag)
            self.ledger.first_look += rounds == 1

    def fresh_get(self, article_id: str) -> int | None:
        response = self.call(
            "probe",
            (200, 404),
            lambda: httpx.get(f"{self.url}/articles/{article_id}", timeout=REQUEST_TIMEOUT_S),
        )
        return None if response is None else response.status_code

    def call(
        self,
        kind: str,
        expected: int | tuple[int, ...],
        send: Callable[[], httpx.Response],
        check: Callable[[httpx.Response], str | None] | None = None,
    ) -> httpx.Response | None:
        """Send one request and record it; returns the response when it is as expected
        (status in ``expected`` and no complaint from ``check``)."""
        accepted = expected if isinstance(expected, tuple) else (expected,)
        started = time.perf_counter()
        response, error = None, None
        try:
            response = send()
            if response.status_code not in accepted:
                error = f"HTTP {response.status_code}: {response.text[:300]}"
            elif check is not None:
                error = check(response)
        except (httpx.HTTPError, ValueError) as failure:
            error = f"{type(failure).__name__}: {failure}"
        latency = (time.perf_counter() - started) * 1000
        status = None if response is None else response.status_code
        self.ledger.record(Sample(kind, status, latency, error))
        return response if error is None else None


def torn_answer(response: httpx.Response) -> str | None:
    """A complaint when an answer cites a passage that the response does not list."""
    body = response.json()
    listed = {p["passage_id"] for p in body["passages"]}
    stray = [a["passage_id"] for a in body["answers"] if a["passage_id"] not in listed]
    return f"torn response: answers cite unlisted passages {stray}" if stray else None


@contextmanager
def running_service(index_dir: Path, key: str, workers: int, log: Path) -> Iterator[str]:
    """``rag serve --workers N`` on loopback; yields its base url once every worker is up."""
    port = free_port()
    env = {**os.environ, "RAG_INDEX_DIR": str(index_dir), "RAG_API_KEY": key}
    env.setdefault("RAG_TORCH_THREADS", "1")
    command = [str(RAG), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--workers", str(workers)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for_workers(log, process, workers)
        yield f"http://127.0.0.1:{port}"
    except BaseException:
        sys.stderr.write(log.read_text(errors="replace")[-4000:])
        raise
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_workers(log: Path, process: subprocess.Popen[bytes], workers: int) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with code {process.returncode}")
        if log.read_text(errors="replace").count(READY_MESSAGE) >= workers:
            return
        time.sleep(0.25)
    raise TimeoutError(f"{workers} workers did not start within {STARTUP_TIMEOUT_S:.0f} s")


def soak(url: str, key: str, clients: int, duration_s: float, max_requests: int) -> Ledger:
    """Run the clients at once until the deadline or the request budget is spent."""
    ledger = Ledger()
    deadline = time.monotonic() + duration_s

    def within_budget() -> bool:
        return len(ledger.samples) < max_requests

    runners = [SoakClient(n, url, key, ledger) for n in range(clients)]
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for done in [pool.submit(r.run, deadline, within_budget) for r in runners]:
            done.result()
    return ledger


def verify(url: str, ledger: Ledger, seed_ids: set[str]) -> Consistency:
    """Check the service's articles against what the clients added and deleted."""
    found = Consistency()
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as http:
        listed = set()
        for offset in itertools.count(step=1000):
            page = http.get("/articles", params={"offset": offset, "limit": 1000}).json()
            listed |= {a["id"] for a in page["articles"]}
            if offset + 1000 >= page["total"]:
                break
        expected = seed_ids | set(ledger.live)
        found.missing = sorted(expected - listed)
        found.unexpected_listed = sorted(listed - expected)
        for article_id in sorted(ledger.deleted):
            if http.get(f"/articles/{article_id}").status_code != 404:
                found.deleted_but_present.append(article_id)

        def check_live(article: SoakArticle) -> None:
            response = http.get(f"/articles/{article.id}")
            if response.status_code != 200 or response.json()["text"] != article.record()["text"]:
                found.wrong_text.append(article.id)
                return
            body = http.post("/ask", json={"question": article.question, "top_k": 5}).json()
            cited = {p["article_id"] for p in body["passages"]}
            cited |= {a["article_id"] for a in body["answers"]}
            if article.id not in cited:
                found.not_found_by_question.append(article.id)

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(check_live, ledger.live.values()))
    return found


def index_check(index_dir: Path) -> str:
    """``rag check`` on the index directory: its first line of output."""
    env = {**os.environ, "RAG_INDEX_DIR": str(index_dir)}
    env.setdefault("RAG_TORCH_THREADS", "1")
    result = subprocess.run(
        [str(RAG), "check"], env=env, capture_output=True, text=True, timeout=300
    )
    lines = (result.stdout + result.stderr).strip().splitlines()
    leftovers = list(index_dir.glob(".tmp-*"))
    if result.returncode != 0 or leftovers:
        return f"FAILED (exit {result.returncode}, leftovers {leftovers}): " + " | ".join(lines)
    return lines[-1] if lines else "ok"


def summarise(ledger: Ledger) -> dict[str, dict[str, Any]]:
    """Counts, failures and latency percentiles per kind of request."""
    kinds: dict[str, dict[str, Any]] = {}
    for kind in ("ask", "add", "delete", "probe"):
        samples = [s for s in ledger.samples if s.kind == kind]
        latencies = [s.latency_ms for s in samples if s.error is None]
        kinds[kind] = {
            "requests": len(samples),
            "failed": sum(s.error is not None for s in samples),
            "server_errors": sum(s.status is not None and s.status >= 500 for s in samples),
            "p50_ms": p50(latencies) if latencies else None,
            "p95_ms": p95(latencies) if latencies else None,
            "max_ms": max(latencies, default=None),
        }
    return kinds


def render(result: dict[str, Any]) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}"

    lines = [
        f"soak: {result['workers']} workers · {result['clients']} clients · "
        f"{result['duration_s']:.0f} s · {result['cpus']} CPUs · "
        f"load average {result['load_before'][0]:.1f} before, {result['load_after'][0]:.1f} after",
        "| kind | requests | failed | 5xx | p50 ms | p95 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, row in result["kinds"].items():
        lines.append(
            f"| {kind} | {row['requests']} | {row['failed']} | {row['server_errors']} | "
            f"{ms(row['p50_ms'])} | {ms(row['p95_ms'])} | {ms(row['max_ms'])} |"
        )
    lag = result["visibility"]
    lines.append(
        f"visibility after {lag['writes']} writes: every one of {PROBE_CONNECTIONS} fresh "
        f"connections saw the write within max {ms(lag['max_ms'])} ms, p95 {ms(lag['p95_ms'])} "
        f"ms; {lag['seen_on_first_look']} writes seen on the first look "
        f"(bar {VISIBILITY_BAR_S:.0f} s: {'met' if lag['within_bar'] else 'MISSED'})"
    )
    consistency = result["consistency"]
    problems = {k: v for k, v in consistency.items() if isinstance(v, list) and v}
    lines.append(
        f"articles: {result['articles_live']} added and kept, {result['articles_deleted']} "
        f"deleted; consistency {problems or 'ok'}; "
        f"index check: {consistency['index_check']}"
    )
    for error in result["error_samples"]:
        lines.append(f"  error: {error}")
    lines.append("PASSED" if result["passed"] else "FAILED")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--workers", type=int, default=2, help="service worker processes")
    parser.add_argument("--max-requests", type=int, default=50_000, help="request budget")
    parser.add_argument("--quick", action="store_true", help="smoke test: 4 clients, 5 s")
    parser.add_argument("--output", type=Path, help="JSON file (default: bench/results/)")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.duration = 4, 5.0

    key = secrets.token_urlsafe(24)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        index_dir = Path(tmp) / "index"
        with running_service(index_dir, key, args.workers, Path(tmp) / "service.log") as url:
            seed_ids = {a["id"] for a in httpx.get(f"{url}/articles").json()["articles"]}
            started = time.monotonic()
            ledger = soak(url, key, args.clients, args.duration, args.max_requests)
            duration_s = time.monotonic() - started
            load_after = os.getloadavg()
            consistency = verify(url, ledger, seed_ids)
        consistency.index_check = index_check(index_dir)

    kinds = summarise(ledger)
    lags_ms = [lag * 1000 for lag in ledger.lags_s]
    errors = [s.error for s in ledger.samples if s.error is not None]
    visibility = {
        "writes": len(lags_ms),
        "max_ms": max(lags_ms, default=None),
        "p95_ms": p95(lags_ms) if lags_ms else None,
        "seen_on_first_look": ledger.first_look,
        "within_bar": all(lag <= VISIBILITY_BAR_S * 1000 for lag in lags_ms),
    }
    result: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "workers": args.workers,
        "clients": args.clients,
        "duration_s": duration_s,
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": load_after,
        "kinds": kinds,
        "failed_requests": len(errors),
        "server_errors": sum(row["server_errors"] for row in kinds.values()),
        "visibility": visibility,
        "articles_live": len(ledger.live),
        "articles_deleted": len(ledger.deleted),
        "consistency": {**asdict(consistency), "ok": consistency.ok},
        "error_samples": errors[:10],
    }
    result["passed"] = not errors and consistency.ok
    output = args.output or RESULTS_DIR / f"soak-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, default=str))
    print(render(result))
    print(f"JSON: {output}")
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
