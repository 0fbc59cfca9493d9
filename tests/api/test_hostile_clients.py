"""Over real HTTP, clients sending invalid text never fail anyone else's questions.

Concurrent questions share encoder calls (``rag/batching.py``), so a question the encoder
cannot take used to fail every question of its batch: with two hostile clients among eight,
51 of 72 normal questions got a 500 (issue 14). The service runs as ``rag serve`` in a
child process on a free loopback port, over the sample index.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from bench.http_latency import QUESTIONS, running_service
from rag.pipeline import Pipeline

NORMAL_CLIENTS = 6
HOSTILE_CLIENTS = 2
REQUESTS_PER_CLIENT = 12
JSON = {"Content-Type": "application/json"}
# valid as JSON but not as text: escaped lone surrogates and control characters
HOSTILE_BODIES = [
    b'{"question": "x \\ud800"}',
    b'{"question": "What aid did Macron commit? \\udfff"}',
    b'{"question": "What aid did Macron commit?", "source": "\\udc80"}',
    b'{"question": "What aid did \\u0000 Macron commit?"}',
    b'{"question": "\\ud83d What aid did Macron commit?"}',
    b'{"question": "\\u001b[2J What aid did Macron commit?"}',
]


@pytest.fixture(scope="module")
def service(sample_pipeline: Pipeline) -> Iterator[str]:
    """The base url of a real service over the sample index (it only reads it)."""
    with running_service(sample_pipeline.settings.index_dir) as url:
        yield url


def test_hostile_clients_never_fail_normal_ones(service: str) -> None:
    start = threading.Barrier(NORMAL_CLIENTS + HOSTILE_CLIENTS)

    def client(number: int, bodies: list[bytes]) -> list[tuple[int | str, str]]:
        """Sends ``REQUESTS_PER_CLIENT`` of ``bodies`` in turn, on one connection; each
        response's status (or the error that replaced it) and detail."""
        sent = [bodies[(number + n) % len(bodies)] for n in range(REQUESTS_PER_CLIENT)]
        outcomes: list[tuple[int | str, str]] = []
        with httpx.Client(base_url=service, timeout=60) as http:
            start.wait()
            for body in sent:
                try:
                    response = http.post("/ask", content=body, headers=JSON)
                except httpx.TransportError as error:  # the service dropped the connection
                    outcomes.append((repr(error), body.decode()))
                    continue
                outcomes.append((response.status_code, response.json().get("detail", "")))
        return outcomes

    normal_bodies = [json.dumps({"question": question}).encode() for question in QUESTIONS]
    with ThreadPoolExecutor(max_workers=NORMAL_CLIENTS + HOSTILE_CLIENTS) as pool:
        normal = [pool.submit(client, n, normal_bodies) for n in range(NORMAL_CLIENTS)]
        hostile = [pool.submit(client, n, HOSTILE_BODIES) for n in range(HOSTILE_CLIENTS)]
        answered = [outcome for future in normal for outcome in future.result()]
        refused = [outcome for future in hostile for outcome in future.result()]

    assert len(answered) == NORMAL_CLIENTS * REQUESTS_PER_CLIENT
    failed = [outcome for outcome in answered if outcome[0] != 200]
    assert not failed, f"{len(failed)} of {len(answered)} normal questions failed: {failed[:3]}"
    assert len(refused) == HOSTILE_CLIENTS * REQUESTS_PER_CLIENT
    for status, detail in refused:  # a readable 422 naming the field and the character
        assert status == 422 and re.match(r"(question|source): .* U\+[0-9A-F]{4} ", detail), detail
