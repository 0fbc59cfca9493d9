"""Concurrent questions are encoded together, each caller gets its own vector back, and
an encoder failure reaches every caller of the batch."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from rag.batching import QueryBatcher
from rag.encoders import Vectors


class SlowEncoder:
    """Encodes a text as ``[len(text)]``, slowly, and records each call's batch."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> Vectors:
        with self.lock:
            self.batches.append(list(texts))
        time.sleep(0.05)
        if self.fail_on in texts:
            raise RuntimeError("encoder broke")
        return np.array([[float(len(t))] for t in texts], dtype=np.float32)


def test_a_lone_question_is_encoded_at_once() -> None:
    encoder = SlowEncoder()
    batcher = QueryBatcher(encoder, max_batch=8)
    assert batcher.embed("four")[0] == 4.0
    assert encoder.batches == [["four"]]


def test_concurrent_questions_share_encoder_calls_and_get_their_own_vectors() -> None:
    encoder = SlowEncoder()
    batcher = QueryBatcher(encoder, max_batch=4)
    texts = ["x" * n for n in range(1, 25)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        vectors = list(pool.map(batcher.embed, texts))
    assert [float(v[0]) for v in vectors] == [float(len(t)) for t in texts]
    assert sorted(t for batch in encoder.batches for t in batch) == sorted(texts)
    assert max(len(b) for b in encoder.batches) == 4  # capped
    assert len(encoder.batches) < len(texts)  # and shared


def test_an_encoder_failure_reaches_every_caller_in_the_batch() -> None:
    encoder = SlowEncoder(fail_on="bad")
    batcher = QueryBatcher(encoder, max_batch=8)
    gate = threading.Barrier(3)

    def ask(text: str) -> str:
        gate.wait()
        try:
            batcher.embed(text)
        except RuntimeError as error:
            return str(error)
        return "ok"

    with ThreadPoolExecutor(max_workers=3) as pool:
        outcomes = list(pool.map(ask, ["bad", "bad", "bad"]))
    assert outcomes == ["encoder broke"] * 3
    assert batcher.embed("fine")[0] == 4.0  # the batcher keeps working


def test_batches_must_hold_a_question() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        QueryBatcher(SlowEncoder(), max_batch=0)
