"""Concurrent items are run together, each caller gets its own result back, and a failure
reaches only the caller whose item causes it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from rag.batching import Batcher, QueryBatcher
from rag.encoders import Vectors


class SlowEncoder:
    """Encodes a text as ``[len(text)]``, slowly, and records each call's batch; fails
    on any batch holding ``fail_on``."""

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


class GatedStage:
    """A stage held busy by the item ``"gate"`` until ``release`` is set, so that the
    items submitted meanwhile queue up and run as one batch; fails on any batch holding
    ``"bad"``; the result of an item is its length."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.busy = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: Sequence[str]) -> list[int]:
        self.calls.append(list(items))
        if "gate" in items:
            self.busy.set()
            assert self.release.wait(timeout=30)
        if "bad" in items:
            raise RuntimeError("stage broke on 'bad'")
        return [len(item) for item in items]


def outcome(submit: Callable[[str], object], item: str) -> object:
    """The result of ``submit(item)``, or the message of the error it raised."""
    try:
        return submit(item)
    except Exception as error:
        return str(error)


def run_queued_together(
    batcher: Batcher[str, int], stage: GatedStage, items: list[str]
) -> dict[str, object]:
    """Submit ``items`` while the stage is busy, so that they wait and run as one batch;
    each item's outcome."""
    with ThreadPoolExecutor(max_workers=len(items) + 1) as pool:
        gate = pool.submit(batcher.submit, "gate")
        assert stage.busy.wait(timeout=30)
        futures = {item: pool.submit(outcome, batcher.submit, item) for item in items}
        deadline = time.monotonic() + 30
        while batcher.waiting < len(items) and time.monotonic() < deadline:
            time.sleep(0.005)
        stage.release.set()
        assert gate.result() == 4
        return {item: future.result() for item, future in futures.items()}


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


def test_one_failing_item_among_eight_fails_alone() -> None:
    stage = GatedStage()
    batcher = Batcher(stage, max_batch=8)
    good = ["a" * n for n in range(1, 8)]

    outcomes = run_queued_together(batcher, stage, [*good[:3], "bad", *good[3:]])

    assert outcomes == {"bad": "stage broke on 'bad'"} | {item: len(item) for item in good}
    together = stage.calls[1]
    assert sorted(together) == sorted([*good, "bad"])  # they did share a call
    assert sorted(stage.calls[2:]) == sorted([item] for item in together)  # then one each


def test_a_failure_every_item_causes_reaches_each_caller() -> None:
    encoder = SlowEncoder(fail_on="bad")
    batcher = QueryBatcher(encoder, max_batch=8)
    gate = threading.Barrier(3)

    def ask(text: str) -> object:
        gate.wait()
        return outcome(batcher.embed, text)

    with ThreadPoolExecutor(max_workers=3) as pool:
        outcomes = list(pool.map(ask, ["bad", "bad", "bad"]))
    assert outcomes == ["encoder broke"] * 3
    assert batcher.embed("fine")[0] == 4.0  # the batcher keeps working


def test_a_stage_that_returns_too_few_results_fails_no_caller_it_served() -> None:
    stage = GatedStage()

    def drops_the_empty_item(items: Sequence[str]) -> list[int]:
        return [n for n in stage(items) if n]

    batcher = Batcher(drops_the_empty_item, max_batch=8)

    outcomes = run_queued_together(batcher, stage, ["one", "", "three"])

    assert outcomes["one"] == 3 and outcomes["three"] == 5
    assert isinstance(outcomes[""], str) and "0 results for 1 items" in outcomes[""]


def test_batches_must_hold_an_item() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        QueryBatcher(SlowEncoder(), max_batch=0)
