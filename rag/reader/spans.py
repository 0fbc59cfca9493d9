"""Decode the reader's start/end logits into character spans of each passage."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rag.chunking import SentenceSplitter
from rag.reader.windows import Window, pad_batch

Logits = npt.NDArray[np.float32]
ScoreBatch = Callable[[dict[str, npt.NDArray[np.int64]]], tuple[Logits, Logits]]
"""A model run: a padded batch (:func:`rag.reader.windows.pad_batch`) to start and end
logits, a row per window."""


@dataclass(frozen=True)
class Reading:
    """What the reader found in one passage for one question."""

    pair: int
    start: int
    """Characters ``[start, end)`` of the passage: the best span."""
    end: int
    span_score: float
    """Start logit plus end logit of the best span."""
    null_score: float
    """Start plus end logit of ``[CLS]`` ("no answer"), the lowest over the windows."""

    @property
    def margin(self) -> float:
        """How much the reader prefers its span to "no answer" (its answerability)."""
        return self.span_score - self.null_score


def sentence_starts(passages: Sequence[str]) -> list[list[int]]:
    """Where each sentence of each passage starts (characters, in order): a span may not
    run from one sentence into the next (see :func:`read_spans`)."""
    splitter = SentenceSplitter()
    return [[sentence.start for sentence in splitter.split(passage)] for passage in passages]


def read_windows(
    windows: Sequence[Window],
    score: ScoreBatch,
    starts_of_sentences: Sequence[Sequence[int]],
    batch_size: int,
    max_answer_tokens: int = 30,
) -> list[Reading | None]:
    """Score the windows in batches of similar length with ``score`` (padding masked
    out), then decode the best span of each pair, whose passage's sentences start at
    ``starts_of_sentences[pair]`` (see :func:`read_spans`)."""
    width = max((len(w.input_ids) for w in windows), default=0)
    starts = np.full((len(windows), width), -1e4, dtype=np.float32)
    ends = np.full((len(windows), width), -1e4, dtype=np.float32)
    order = sorted(range(len(windows)), key=lambda row: len(windows[row].input_ids))
    for begin in range(0, len(order), batch_size):
        rows = order[begin : begin + batch_size]
        batch_starts, batch_ends = score(pad_batch([windows[row] for row in rows]))
        for position, row in enumerate(rows):
            length = len(windows[row].input_ids)
            starts[row, :length] = batch_starts[position, :length]
            ends[row, :length] = batch_ends[position, :length]
    return read_spans(windows, starts, ends, starts_of_sentences, max_answer_tokens)


def read_spans(
    windows: Sequence[Window],
    start_logits: Logits,
    end_logits: Logits,
    starts_of_sentences: Sequence[Sequence[int]],
    max_answer_tokens: int = 30,
    top_n: int = 20,
) -> list[Reading | None]:
    """The best span of each pair over all its windows (``None``: a pair without windows).

    A span starts and ends inside the passage, ends no earlier than it starts and is at
    most ``max_answer_tokens`` tokens long; among the ``top_n`` best starts and ends the
    pair with the highest summed logit wins. A winner that runs from one sentence into
    the next (the sentences of the pair's passage start at the characters
    ``starts_of_sentences[pair]``) keeps its start and ends at the best end within the
    start's sentence: no dev answer crosses a sentence end, and the reader's spans that
    did mostly held the answer at their start and ran on.
    """
    best: list[Reading | None] = [None] * len(starts_of_sentences)
    for row, window in enumerate(windows):
        starts, ends = start_logits[row], end_logits[row]
        first, last = window.passage_range
        null = float(starts[0] + ends[0])
        span = _in_one_sentence(
            _best_span(starts, ends, first, last, max_answer_tokens, top_n),
            starts,
            ends,
            window.offsets,
            starts_of_sentences[window.pair],
        )
        current = best[window.pair]
        start_offset, end_offset = window.offsets[span[0]], window.offsets[span[1]]
        assert start_offset is not None and end_offset is not None
        reading = Reading(
            pair=window.pair,
            start=start_offset[0],
            end=end_offset[1],
            span_score=span[2],
            null_score=null if current is None else min(null, current.null_score),
        )
        if current is None or reading.span_score > current.span_score:
            best[window.pair] = reading
        else:
            best[window.pair] = Reading(
                current.pair, current.start, current.end, current.span_score, reading.null_score
            )
    return best


def _best_span(
    starts: Logits, ends: Logits, first: int, last: int, max_tokens: int, top_n: int
) -> tuple[int, int, float]:
    inside_starts = starts[first : last + 1]
    inside_ends = ends[first : last + 1]
    n = min(top_n, len(inside_starts))
    start_candidates = np.argsort(-inside_starts)[:n]
    end_candidates = np.argsort(-inside_ends)[:n]
    best = (first, first, float("-inf"))
    for s in start_candidates:
        for e in end_candidates:
            if e < s or e - s + 1 > max_tokens:
                continue
            score = float(inside_starts[s] + inside_ends[e])
            if score > best[2]:
                best = (first + int(s), first + int(e), score)
    if best[2] == float("-inf"):  # no valid pair among the candidates: the best single token
        token = int(np.argmax(inside_starts + inside_ends))
        best = (first + token, first + token, float(inside_starts[token] + inside_ends[token]))
    return best


def _in_one_sentence(
    span: tuple[int, int, float],
    starts: Logits,
    ends: Logits,
    offsets: Sequence[tuple[int, int] | None],
    sentence_starts: Sequence[int],
) -> tuple[int, int, float]:
    """``span`` (token positions and score) when it lies inside one sentence; else its
    start, with the best end before the next sentence starts."""
    start, end, _ = span
    following = bisect_right(sentence_starts, _character(offsets[start]))
    if following == len(sentence_starts) or _character(offsets[end]) < sentence_starts[following]:
        return span
    in_sentence = [
        token
        for token in range(start, end + 1)
        if _character(offsets[token]) < sentence_starts[following]
    ]
    best_end = max(in_sentence, key=lambda token: ends[token])
    return start, best_end, float(starts[start] + ends[best_end])


def _character(offset: tuple[int, int] | None) -> int:
    """Where a token of the passage starts (every token of the passage slice has one)."""
    assert offset is not None
    return offset[0]
