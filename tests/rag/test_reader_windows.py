"""Reader inputs and outputs: windows with exact offsets, and span decoding."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.embedding import packaged_model_path
from rag.reader.spans import read_spans, sentence_starts
from rag.reader.windows import PAD_MULTIPLE, WindowSpec, answer_positions, make_windows, pad_batch

PASSAGE = (
    "Macron said that France would continue to honour its current commitments, which "
    "include three billion euros in aid this year. The talks ended on Thursday."
)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(packaged_model_path()), local_files_only=True)


def test_a_short_passage_is_one_window_whose_tokens_map_to_its_characters(tokenizer: Any) -> None:
    [window] = make_windows(tokenizer, ["What aid?"], [PASSAGE], WindowSpec())
    first, last = window.passage_range
    assert window.input_ids[0] == tokenizer.cls_token_id
    assert all(o is None for o in window.offsets[:first])  # [CLS] question [SEP]
    for offset in window.offsets[first : last + 1]:
        assert offset is not None
        piece = PASSAGE[offset[0] : offset[1]]
        assert piece and not piece.isspace()
    assert window.offsets[first] is not None and window.offsets[first][0] == 0  # "macro" "##n"


def test_a_long_passage_is_read_in_overlapping_strides(tokenizer: Any) -> None:
    passage = " ".join(f"Sentence number {i} mentions the harbour of Odesa." for i in range(80))
    spec = WindowSpec(max_length=96, stride=32, max_question_tokens=16)
    windows = make_windows(tokenizer, ["Which harbour?"], [passage], spec)
    assert len(windows) > 5
    covered: list[tuple[int, int]] = []
    for window in windows:
        assert len(window.input_ids) <= spec.max_length
        first, last = window.passage_range
        start, end = window.offsets[first], window.offsets[last]
        assert start is not None and end is not None
        covered.append((start[0], end[1]))
    assert covered[0][0] == 0 and covered[-1][1] == len(passage)
    for (_, previous_end), (next_start, _) in itertools.pairwise(covered):
        assert next_start < previous_end  # windows overlap: no answer falls between two


def test_answer_positions_find_the_tokens_or_point_at_cls(tokenizer: Any) -> None:
    [window] = make_windows(tokenizer, ["What aid?"], [PASSAGE], WindowSpec())
    start = PASSAGE.index("three billion euros")
    first, last = answer_positions(window, start, start + len("three billion euros"))
    first_offset, last_offset = window.offsets[first], window.offsets[last]
    assert first_offset is not None and last_offset is not None
    assert PASSAGE[first_offset[0] : last_offset[1]] == "three billion euros"
    outside = make_windows(
        tokenizer, ["What aid?"], [PASSAGE * 8], WindowSpec(max_length=64, stride=16)
    )
    late = len(PASSAGE) * 7 + start
    assert answer_positions(outside[0], late, late + 5) == (0, 0)


def test_long_questions_are_cut_and_batches_padded_to_a_multiple(tokenizer: Any) -> None:
    question = "why " * 200
    windows = make_windows(tokenizer, [question, "who?"], [PASSAGE, PASSAGE], WindowSpec())
    assert [w.pair for w in windows] == [0, 1]
    batch = pad_batch(windows)
    assert batch["input_ids"].shape[1] % PAD_MULTIPLE == 0
    assert batch["attention_mask"][1].sum() == len(windows[1].input_ids)


def test_spans_are_decoded_across_windows_and_null_is_the_lowest(tokenizer: Any) -> None:
    passage = " ".join(f"Item {i} costs {i} euros." for i in range(60))
    spec = WindowSpec(max_length=64, stride=16, max_question_tokens=8)
    windows = make_windows(tokenizer, ["What costs 42 euros?"], [passage], spec)
    width = max(len(w.input_ids) for w in windows)
    starts = np.full((len(windows), width), -5.0, dtype=np.float32)
    ends = np.full((len(windows), width), -5.0, dtype=np.float32)
    target = passage.index("Item 42")
    for row, window in enumerate(windows):
        starts[row, 0] = ends[row, 0] = float(row)  # null scores 0, 2, 4, ...
        for token, offset in enumerate(window.offsets):
            if offset is not None and offset[0] == target:
                starts[row, token] = ends[row, token] = 10.0
    [reading] = read_spans(windows, starts, ends, sentence_starts([passage]))
    assert reading is not None
    assert passage[reading.start : reading.end] == "Item"
    assert reading.span_score == pytest.approx(20.0)
    assert reading.null_score == pytest.approx(0.0)
    assert reading.margin == pytest.approx(20.0)


def test_a_span_does_not_run_from_one_sentence_into_the_next(tokenizer: Any) -> None:
    passage = "The port reopened on Monday. Ferries resumed at noon."
    [window] = make_windows(tokenizer, ["When?"], [passage], WindowSpec())
    starts = np.full((1, len(window.input_ids)), -5.0, dtype=np.float32)
    ends = starts.copy()
    token_at = {offset[0]: i for i, offset in enumerate(window.offsets) if offset is not None}
    starts[0, token_at[passage.index("Monday")]] = 9.0  # "Monday. Ferries resumed at noon"
    ends[0, token_at[passage.index("noon")]] = 9.0  # would score 18
    ends[0, token_at[passage.index("Monday")]] = 4.0

    [reading] = read_spans([window], starts, ends, sentence_starts([passage]))

    assert reading is not None and passage[reading.start : reading.end] == "Monday"
    assert reading.span_score == pytest.approx(13.0)


@settings(max_examples=40, deadline=None)
@given(
    question=st.text(min_size=1, max_size=40),
    passage=st.text(min_size=1, max_size=400),
    seed=st.integers(0, 2**16),
)
def test_any_decoded_span_lies_inside_its_passage(
    tokenizer: Any, question: str, passage: str, seed: int
) -> None:
    spec = WindowSpec(max_length=48, stride=16, max_question_tokens=8)
    windows = make_windows(tokenizer, [question], [passage], spec)
    if not windows:  # nothing but whitespace or characters the tokenizer drops
        assert not tokenizer(passage, add_special_tokens=False)["input_ids"]
        return
    rng = np.random.default_rng(seed)
    width = max(len(w.input_ids) for w in windows)
    starts = rng.normal(size=(len(windows), width)).astype(np.float32)
    ends = rng.normal(size=(len(windows), width)).astype(np.float32)
    sentences = sentence_starts([passage])
    [reading] = read_spans(windows, starts, ends, sentences, max_answer_tokens=5)
    assert reading is not None
    assert 0 <= reading.start < reading.end <= len(passage)
    assert not [start for start in sentences[0] if reading.start < start < reading.end]
