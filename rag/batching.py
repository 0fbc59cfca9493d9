"""Run a batched stage (the question encoder, a reader) on items that arrive together.

A service answers concurrent requests on several threads; each needs, say, its question
embedded. Running the model once per item wastes it, and parallel calls fight over the
same cores. :class:`Batcher` lets one thread at a time run the stage, on every item
waiting when it starts: a lone item runs at once (no waiting for company), and items that
arrive while the stage is busy run together in the next call.

Items from different clients share a call, so a failure must not be shared: when the
stage fails on a batch of several items, each is run again alone, and only the item that
causes the failure gets it. The others get their results.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from rag.encoders import Vectors

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Request(Generic[T, R]):
    item: T
    result: tuple[R] | None = None  # boxed, so that a result may itself be None
    error: BaseException | None = None
    done: bool = False


class Batcher(Generic[T, R]):
    """Batches concurrent calls to ``run`` (a sequence of items to one result per item,
    in order), at most ``max_batch`` items per call."""

    def __init__(self, run: Callable[[Sequence[T]], Sequence[R]], max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.run = run
        self.max_batch = max_batch
        self._queue_lock = threading.Lock()
        self._stage_lock = threading.Lock()
        self._waiting: list[_Request[T, R]] = []

    @property
    def waiting(self) -> int:
        """How many items are queued for the next call."""
        with self._queue_lock:
            return len(self._waiting)

    def submit(self, item: T) -> R:
        """The result of ``item``, possibly computed in one call with other threads' items;
        raises what ``run`` raised on ``item`` itself."""
        request: _Request[T, R] = _Request(item)
        with self._queue_lock:
            self._waiting.append(request)
        while not request.done:
            with self._stage_lock:
                if request.done:  # a batch run by another thread included it
                    break
                with self._queue_lock:
                    batch = self._waiting[: self.max_batch]
                    del self._waiting[: self.max_batch]
                self._run(batch)
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result[0]

    def _run(self, batch: list[_Request[T, R]]) -> None:
        try:
            results = list(self.run([request.item for request in batch]))
            if len(results) != len(batch):
                raise ValueError(f"{len(results)} results for {len(batch)} items")
        except Exception as error:
            if len(batch) == 1:
                batch[0].error, batch[0].done = error, True
            else:  # find the item that fails: each alone, so no other caller gets its error
                for request in batch:
                    self._run([request])
            return
        except BaseException as error:  # an interrupt: every waiting caller must wake up
            for request in batch:
                request.error, request.done = error, True
            return
        for request, result in zip(batch, results, strict=True):
            request.result, request.done = (result,), True


class QueryBatcher(Batcher[str, Vectors]):
    """The question encoder's batcher: ``encode`` maps texts to one vector row per text."""

    def __init__(self, encode: Callable[[Sequence[str]], Vectors], max_batch: int) -> None:
        super().__init__(lambda texts: list(encode(texts)), max_batch)

    def embed(self, text: str) -> Vectors:
        """The vector of ``text``, possibly computed in one call with other threads' texts."""
        return self.submit(text)
