"""Turning the reader's spans into answers: whole words, enclosing sentences, merging."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from rag.answering import (
    NAMED,
    Calibration,
    PassageHit,
    merge_duplicates,
    named_coverage,
    sentence_context,
    term_coverage,
)
from rag.reader.answerer import SQUAD2_RULE, ReaderAnswerer, whole_words
from rag.reader.spans import Reading
from records import Chunk

ARTICLE = (
    "Leaders met in Brussels on Thursday. The bloc agreed to lend 35 billion euros. "
    "Talks resume in November."
)


def chunk(ordinal: int, first: int, last: int) -> Chunk:
    """A chunk of ARTICLE holding its sentences ``first`` to ``last``."""
    bounds = [(0, 36), (37, 78), (79, len(ARTICLE))]
    start, end = bounds[first][0], bounds[last][1]
    return Chunk("a1", ordinal, start, end, ARTICLE[start:end], tuple(bounds[first : last + 1]))


class ScriptedReader:
    """Stands in for the span reader: returns the span given for each passage text."""

    def __init__(self, spans: dict[str, tuple[str, float]]) -> None:
        self.spans = spans
        self.calls: list[list[str]] = []
        """The passages of each call, in order."""

    def read(
        self, question: str, passages: Sequence[str], starts_of_sentences: Sequence[Sequence[int]]
    ) -> list[Reading | None]:
        self.calls.append(list(passages))
        readings: list[Reading | None] = []
        for pair, passage in enumerate(passages):
            words, margin = self.spans[passage]
            start = passage.index(words)
            readings.append(Reading(pair, start, start + len(words), margin + 1.0, 1.0))
        return readings


def hit(c: Chunk, score: float) -> PassageHit:
    return PassageHit(c, score, np.zeros((len(c.sentences), 384), dtype=np.float32))


def answerer(reader: Any, passages: int = 5) -> ReaderAnswerer:
    return ReaderAnswerer(reader, SQUAD2_RULE, passages)


def test_a_span_cut_inside_a_word_is_widened_to_whole_words_and_keeps_its_sentence() -> None:
    second = chunk(1, 1, 1)
    reader = ScriptedReader({second.text: ("5 billion eu", 3.0)})
    [candidate] = answerer(reader).candidates("how much?", np.zeros(384), [hit(second, 0.9)])
    assert candidate.text == "35 billion euros"
    assert ARTICLE[candidate.start : candidate.end] == candidate.text
    assert candidate.context.text == "The bloc agreed to lend 35 billion euros."
    assert ARTICLE[candidate.context.start : candidate.context.end] == candidate.context.text
    assert candidate.features["margin"] == 3.0 and candidate.features["passage"] == 0.9


def test_coverage_features_count_the_question_terms_in_the_passage_and_the_sentence() -> None:
    passage = chunk(0, 0, 1)
    reader = ScriptedReader({passage.text: ("35 billion euros", 2.0)})
    [candidate] = answerer(reader).candidates(
        "What did the leaders in Brussels lend Kyiv?", np.zeros(384), [hit(passage, 0.5)]
    )
    # terms: leader, brussel, lend, kyiv; the passage has three, the answer's sentence one
    assert candidate.features["coverage"] == 0.75
    assert candidate.features["sentence_coverage"] == 0.25
    assert candidate.features["named_coverage"] == 0.5  # Brussels, not Kyiv


def test_term_coverage_matches_stems_ignores_stop_words_and_case() -> None:
    texts = ["The LEADERS were lending.", "Nothing here.", ""]
    assert term_coverage("Which leader lends?", texts) == [1.0, 0.0, 0.0]
    assert term_coverage("Who is it?", texts) == [0.0, 0.0, 0.0]  # only stop words
    assert term_coverage("Which leader lends?", texts[:1], stopwords="en") == [2 / 3]  # "which"


def test_named_terms_are_runs_of_capitalised_words_and_numbers_after_the_first_word() -> None:
    question = "What did Microsoft's U.S. arm pay in 1936, when 3.5% of New York Times staff left?"
    assert [m.group() for m in NAMED.finditer(question)][1:] == [
        "Microsoft",
        "U.S",
        "1936",
        "3.5%",
        "New York Times",
    ]
    assert [m.group() for m in NAMED.finditer("Has I or A seen the 1930s iPhone?")] == ["Has"]


def test_named_coverage_counts_the_names_and_numbers_of_the_question_a_text_holds() -> None:
    texts = ["France pledged three billion euros in 2024.", "The UK pledged in 2024.", ""]
    question = "How much did the UK pledge in 2024?"  # names and numbers: UK, 2024
    assert named_coverage(question, texts) == [0.5, 1.0, 0.0]
    assert named_coverage("how much was pledged?", texts) == [1.0, 1.0, 1.0]  # none asked


def test_the_same_words_read_in_two_overlapping_chunks_are_one_answer() -> None:
    first, second = chunk(0, 0, 1), chunk(1, 1, 2)
    reader = ScriptedReader(
        {first.text: ("35 billion euros", 2.0), second.text: ("35 billion", 4.0)}
    )
    found = answerer(reader).candidates(
        "how much?", np.zeros(384), [hit(first, 0.8), hit(second, 0.7)]
    )
    assert [c.text for c in found] == ["35 billion"]  # the better-scored reading wins
    assert found[0].passage.passage_id == "a1:1"


def test_only_the_best_passages_are_read_and_clause_punctuation_is_trimmed() -> None:
    first, second = chunk(0, 0, 0), chunk(1, 1, 1)
    reader = ScriptedReader({second.text: ("lend 35 billion euros.", 1.0)})
    found = answerer(reader, passages=1).candidates(
        "how much?", np.zeros(384), [hit(first, 0.2), hit(second, 0.9)]
    )
    assert [c.text for c in found] == ["lend 35 billion euros."]
    reader = ScriptedReader({first.text: (" Brussels ", 1.0)})
    [only] = answerer(reader).candidates("where?", np.zeros(384), [hit(first, 0.5)])
    assert only.text == "Brussels"


def test_the_reader_reads_on_only_while_no_answer_is_sure() -> None:
    first, second, third = chunk(0, 0, 0), chunk(1, 1, 1), chunk(2, 2, 2)
    hits = [hit(second, 0.8), hit(first, 0.9), hit(third, 0.1)]

    def ask(first_margin: float) -> tuple[list[str], list[list[str]]]:
        reader = ScriptedReader(
            {
                first.text: ("Brussels", first_margin),
                second.text: ("35 billion euros", 1.0),
                third.text: ("November", 2.0),
            }
        )
        reading = ReaderAnswerer(reader, SQUAD2_RULE, 3, first_passages=1, sure_score=0.9)
        found = reading.candidates("where?", np.zeros(384), hits)
        return [c.text for c in found], reader.calls

    # the best-retrieved passage alone, its answer sure (logistic of margin 3: .95)
    assert ask(3.0) == (["Brussels"], [[first.text]])
    # not sure (.5): the other two passages in one more call, a better answer there wins
    texts, calls = ask(0.0)
    assert texts == ["November", "35 billion euros", "Brussels"]
    assert calls == [[first.text], [second.text, third.text]]


def test_a_span_across_a_sentence_boundary_gets_both_sentences_as_context() -> None:
    both = chunk(0, 0, 1)
    context = sentence_context(both, 30, 45)
    assert context.text == ARTICLE[0:78] and (context.start, context.end) == (0, 78)


def test_calibration_reads_any_feature_names(tmp_path: Any) -> None:
    path = tmp_path / "calibration.json"
    Calibration(-1.0, {"margin": 0.5, "passage": 2.0}, 0.3).save(path, note="test")
    loaded = Calibration.load(path)
    assert loaded.features == ("margin", "passage")
    assert loaded.probability({"margin": 2.0, "passage": 0.0}) == 0.5


def test_merge_keeps_the_first_of_repeated_wordings() -> None:
    first, third = chunk(0, 0, 0), chunk(2, 2, 2)
    reader = ScriptedReader({first.text: ("Brussels", 2.0), third.text: ("November", 1.0)})
    found = answerer(reader).candidates("where?", np.zeros(384), [hit(first, 0.9), hit(third, 0.8)])
    assert [c.text for c in found] == ["Brussels", "November"]
    assert merge_duplicates([found[0], found[0]]) == [found[0]]


@pytest.mark.parametrize(
    ("text", "span", "widened"),
    [
        ("down from 9,317 feet to 6,692 feet", "692 feet", "6,692 feet"),
        ("down from 9,317 feet to 6,692 feet", "9,31", "9,317"),
        ("estimated at 11.4 bln euro", "4 bln", "11.4 bln"),
        ("a brigade of 3\u00a0000 soldiers", "000 soldiers", "3\u00a0000 soldiers"),
        ("lend 35 billion euros", "5 billion eu", "35 billion euros"),
        ("in 2016, 300 people fled", "300 people", "300 people"),
        ("in 2016, 300 people fled", "2016, ", "2016"),
        ("it ended in 2016. 300 people fled", "2016", "2016"),
    ],
)
def test_a_span_is_widened_to_whole_words_and_whole_numbers(
    text: str, span: str, widened: str
) -> None:
    start = text.index(span)
    new_start, new_end = whole_words(text, start, start + len(span))
    assert text[new_start:new_end] == widened
