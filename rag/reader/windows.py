"""Reader inputs: a question and a passage, tokenised into overlapping windows.

A passage longer than the reader's window is read in strides: each window holds the
question, then as much of the passage as fits, overlapping the previous window by
``stride`` tokens. Every passage token keeps its character offsets into the passage,
so a span the reader points at maps back to exact characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

PAD_MULTIPLE = 32
"""Batches are padded to a multiple of this many tokens: few distinct shapes keep the
CPU allocator's memory flat during training and the ONNX graph's caches warm."""


@dataclass(frozen=True)
class WindowSpec:
    """How questions and passages are cut into windows."""

    max_length: int = 256
    stride: int = 96
    max_question_tokens: int = 64


@dataclass(frozen=True)
class Window:
    """One reader input: ``[CLS] question [SEP] passage slice [SEP]``."""

    pair: int
    """Index of the (question, passage) pair this window reads."""
    input_ids: list[int]
    token_type_ids: list[int]
    offsets: list[tuple[int, int] | None]
    """Per token, its ``(start, end)`` characters in the passage; ``None`` outside it."""

    @property
    def passage_range(self) -> tuple[int, int]:
        """Token positions ``[first, last]`` of the passage slice."""
        inside = [i for i, offset in enumerate(self.offsets) if offset is not None]
        return inside[0], inside[-1]


def make_windows(
    tokenizer: Any, questions: Sequence[str], passages: Sequence[str], spec: WindowSpec
) -> list[Window]:
    """Windows for each ``(questions[i], passages[i])`` pair, in pair order.

    ``tokenizer`` is a Hugging Face fast tokenizer. Questions longer than
    ``spec.max_question_tokens`` tokens are cut there; an empty passage gives no window.
    """
    questions = [_cut_question(tokenizer, q, spec.max_question_tokens) for q in questions]
    encoded = tokenizer(
        questions,
        list(passages),
        truncation="only_second",
        max_length=spec.max_length,
        stride=spec.stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )
    windows: list[Window] = []
    for row, pair in enumerate(encoded["overflow_to_sample_mapping"]):
        sequence_ids = encoded.sequence_ids(row)
        offsets: list[tuple[int, int] | None] = [
            (int(span[0]), int(span[1])) if sequence == 1 else None
            for span, sequence in zip(encoded["offset_mapping"][row], sequence_ids, strict=True)
        ]
        if not any(offset is not None for offset in offsets):
            continue
        windows.append(
            Window(
                pair=int(pair),
                input_ids=list(encoded["input_ids"][row]),
                token_type_ids=list(encoded["token_type_ids"][row]),
                offsets=offsets,
            )
        )
    return windows


def _cut_question(tokenizer: Any, question: str, max_tokens: int) -> str:
    encoded = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    spans = encoded["offset_mapping"]
    if len(spans) <= max_tokens:
        return question
    return question[: spans[max_tokens - 1][1]]


def pad_batch(windows: Sequence[Window]) -> dict[str, npt.NDArray[np.int64]]:
    """``input_ids``, ``attention_mask`` and ``token_type_ids`` padded to a common length."""
    longest = max(len(w.input_ids) for w in windows)
    length = -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE
    arrays = {
        name: np.zeros((len(windows), length), dtype=np.int64)
        for name in ("input_ids", "attention_mask", "token_type_ids")
    }
    for row, window in enumerate(windows):
        size = len(window.input_ids)
        arrays["input_ids"][row, :size] = window.input_ids
        arrays["attention_mask"][row, :size] = 1
        arrays["token_type_ids"][row, :size] = window.token_type_ids
    return arrays


def answer_positions(window: Window, start: int, end: int) -> tuple[int, int]:
    """Token positions of characters ``[start, end)`` of the passage inside ``window``.

    ``(0, 0)`` (the ``[CLS]`` token, "no answer here") when the span is not wholly in it.
    """
    first, last = window.passage_range
    first_offset, last_offset = window.offsets[first], window.offsets[last]
    assert first_offset is not None and last_offset is not None
    if start < first_offset[0] or end > last_offset[1]:
        return 0, 0
    start_token = first
    while start_token < last and _end_of(window, start_token) <= start:
        start_token += 1
    end_token = last
    while end_token > start_token and _start_of(window, end_token) >= end:
        end_token -= 1
    return start_token, end_token


def _start_of(window: Window, token: int) -> int:
    offset = window.offsets[token]
    assert offset is not None
    return offset[0]


def _end_of(window: Window, token: int) -> int:
    offset = window.offsets[token]
    assert offset is not None
    return offset[1]
