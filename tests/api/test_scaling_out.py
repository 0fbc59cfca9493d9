"""Scaling out, on one machine: a PostgreSQL primary and a streaming replica made from it
(``pg_basebackup -R``), a writer service on the primary and a reader service that reads
from the replica (``bench/topology.py`` starts them)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from bench.topology import (
    PRIMARY_DOWN_S,
    Topology,
    asking,
    news_article,
    restart_primary,
    running_topology,
)

VISIBLE_WITHIN_S = 2.0
RECOVERY_TIMEOUT_S = 60.0
CLIENTS = 8


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    with running_topology(tmp_path_factory.mktemp("topology")) as running:
        yield running


def test_the_reader_answers_from_the_replica_a_write_made_through_the_writer_within_2_s(
    topology: Topology, festival: dict[str, object]
) -> None:
    [reader] = topology.readers
    assert not topology.stored(reader, "harbour-festival")

    topology.add(festival)

    assert topology.seconds_until_visible(reader, "harbour-festival", 30) <= VISIBLE_WITHIN_S
    answer = httpx.post(
        f"{reader.url}/ask",
        json={"question": "How many visitors came to the harbour festival?"},
        timeout=60,
    ).json()["answers"][0]
    assert answer["article_id"] == "harbour-festival" and "48,000" in answer["text"]
    health = [httpx.get(f"{s.url}/health").json() for s in (topology.writer, reader)]
    assert health[0]["articles"] == health[1]["articles"] == 4


def test_a_primary_crash_under_8_clients_gets_503s_loses_no_commit_and_heals_by_itself(
    topology: Topology,
) -> None:
    [reader] = topology.readers
    with asking({"writer": topology.writer, "reader": reader}, CLIENTS) as outcomes:
        topology.add(news_article(1))  # committed before the crash
        restart_primary(topology, down_s=PRIMARY_DOWN_S, timeout_s=RECOVERY_TIMEOUT_S)
        time.sleep(0.5)

    # the writer reads the primary: refused with a readable 503 while it was down, then
    # answering again without a restart
    assert outcomes.statuses("writer") == {200, 503}
    assert outcomes.by_service["writer"][-1][0] == 200
    for status, body in outcomes.by_service["writer"]:
        if status == 503:
            assert "cannot be read right now" in httpx.Response(503, text=body).json()["detail"]
    # the reader reads the replica, which stayed up: it never stopped answering
    assert outcomes.statuses("reader") == {200}
    assert topology.stored(topology.writer, "harbour-report-1")
    assert topology.stored(reader, "harbour-report-1")
    topology.add(news_article(2))  # writes work again, and the replica follows again
    assert topology.seconds_until_visible(reader, "harbour-report-2", RECOVERY_TIMEOUT_S) >= 0
