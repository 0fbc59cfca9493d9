"""Encode questions that arrive together in one encoder call.

A service answers concurrent requests on several threads; each needs its question
embedded. Encoding them one at a time makes the model run once per question, and
parallel encoder calls fight over the same cores. :class:`QueryBatcher` lets one
thread at a time run the encoder, on every question waiting when it starts: a lone
question is encoded at once (no waiting for company), and questions that arrive while
the encoder is busy are encoded together in the next call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rag.encoders import Vectors


@dataclass
class _Request:
    text: str
    vector: Vectors | None = None
    error: BaseException | None = None
    done: bool = field(default=False)


class QueryBatcher:
    """Batches concurrent calls to ``encode`` (a list of texts to one row per text),
    at most ``max_batch`` texts per call."""

    def __init__(self, encode: Callable[[Sequence[str]], Vectors], max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.encode = encode
        self.max_batch = max_batch
        self._queue_lock = threading.Lock()
        self._encoder_lock = threading.Lock()
        self._waiting: list[_Request] = []

    def embed(self, text: str) -> Vectors:
        """The vector of ``text``, possibly computed in one call with other threads' texts."""
        request = _Request(text)
        with self._queue_lock:
            self._waiting.append(request)
        while not request.done:
            with self._encoder_lock:
                if request.done:  # a batch run by another thread included it
                    break
                with self._queue_lock:
                    batch = self._waiting[: self.max_batch]
                    del self._waiting[: self.max_batch]
                self._run(batch)
        if request.error is not None:
            raise request.error
        assert request.vector is not None
        return request.vector

    def _run(self, batch: list[_Request]) -> None:
        try:
            vectors = self.encode([r.text for r in batch])
        except BaseException as error:  # every waiting caller gets the failure
            for request in batch:
                request.error, request.done = error, True
            return
        for request, vector in zip(batch, vectors, strict=True):
            request.vector, request.done = vector, True
