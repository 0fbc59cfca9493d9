"""Answer with the span the trained reader points at, inside its sentence.

The reader reads the best ``passages`` retrieved passages in one batched call and
proposes its best span in each. Five features decide how sure the answer is: the
reader's margin of the span over "no answer", the span's own logit, the passage's
retrieval score, and how much of the question's terms the passage and the answer's
sentence contain; a logistic model fitted on dev questions (``rag eval --calibrate``)
turns them into a probability, and the service abstains below its threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from rag.answering import (
    Calibration,
    Candidate,
    PassageHit,
    merge_duplicates,
    named_coverage,
    sentence_context,
    term_coverage,
)
from rag.reader.model import SpanReader
from rag.reader.spans import Reading
from records import Span

FEATURES = ("margin", "span", "passage", "coverage", "sentence_coverage", "named_coverage")
SQUAD2_RULE = Calibration(0.0, {"margin": 1.0, "span": 0.0, "passage": 0.0}, 0.5)
"""The reader's own decision before any calibration is fitted: answer when the span beats
"no answer" (the SQuAD 2.0 rule), the score a logistic of that margin."""
_EDGE_PUNCTUATION = " \t\n,;:"
_DIGIT_SEPARATORS = ",.\u00a0\u202f\u2009"
"""What may join the digit groups of a number: comma, point and the no-break spaces."""


class ReaderAnswerer:
    """Scored span candidates from the reader's reading of the top passages."""

    features: tuple[str, ...] = FEATURES

    def __init__(
        self,
        reader: SpanReader,
        calibration: Calibration,
        passages: int,
        first_passages: int | None = None,
        sure_score: float = 1.0,
    ) -> None:
        self.reader = reader
        self.calibration = calibration
        self.passages = passages
        self.first_passages = min(first_passages or passages, passages)
        self.sure_score = sure_score

    def candidates(
        self, question: str, question_vector: npt.NDArray[np.float32], hits: Sequence[PassageHit]
    ) -> list[Candidate]:
        """The best span of each of the top passages, scored, best first; spans that
        overlap (the same words read in two overlapping chunks) or repeat are merged.

        The best ``first_passages`` are read first; the rest of the top ``passages`` only
        when no answer of those scores ``sure_score`` or more (a candidate's score does
        not depend on the other passages read, so a sure answer stays the best unless a
        later passage holds a better one)."""
        ranked = sorted(hits, key=lambda h: -h.score)[: self.passages]
        found = self._read(question, ranked[: self.first_passages])
        if not any(candidate.score >= self.sure_score for candidate in found):
            found += self._read(question, ranked[self.first_passages :])
        found.sort(key=lambda c: -c.score)
        return merge_duplicates(found)

    def _read(self, question: str, read: Sequence[PassageHit]) -> list[Candidate]:
        """The best span of each passage in ``read`` (one batched reading), scored."""
        if not read:
            return []
        readings = self.reader.read(  # spans inside the chunks' sentences, their contexts
            question,
            [hit.chunk.text for hit in read],
            [[start - hit.chunk.start for start, _ in hit.chunk.sentences] for hit in read],
        )
        spans: list[tuple[PassageHit, Reading, Span]] = []
        for hit, reading in zip(read, readings, strict=True):
            if reading is None:
                continue
            chunk = hit.chunk
            start, end = whole_words(chunk.text, reading.start, reading.end)
            if start < end:
                spans.append(
                    (
                        hit,
                        reading,
                        Span(chunk.start + start, chunk.start + end, chunk.text[start:end]),
                    )
                )
        passages = [hit.chunk.text for hit, _, _ in spans]
        passage_coverage = term_coverage(question, passages)
        names_coverage = named_coverage(question, passages)
        contexts = [sentence_context(hit.chunk, span.start, span.end) for hit, _, span in spans]
        sentence_coverage = term_coverage(question, [context.text for context in contexts])
        found: list[Candidate] = []
        for (hit, reading, span), context, coverage, in_sentence, names in zip(
            spans, contexts, passage_coverage, sentence_coverage, names_coverage, strict=True
        ):
            features = {
                "margin": reading.margin,
                "span": reading.span_score,
                "passage": hit.score,
                "coverage": coverage,
                "sentence_coverage": in_sentence,
                "named_coverage": names,
            }
            found.append(
                Candidate(
                    article_id=hit.chunk.article_id,
                    start=span.start,
                    end=span.end,
                    text=span.text,
                    context=context,
                    passage=hit.chunk,
                    features=features,
                    score=self.calibration.probability(features),
                )
            )
        return found


def whole_words(text: str, start: int, end: int) -> tuple[int, int]:
    """``[start, end)`` widened to whole words (a span can end inside a word that the
    tokenizer cut in pieces) and whole numbers (it splits "6,692" at the comma), then
    without leading or trailing spaces and clause punctuation."""
    while start > 0 and _joined(text, start):
        start -= 1
    while end < len(text) and _joined(text, end):
        end += 1
    while start < end and text[start] in _EDGE_PUNCTUATION:
        start += 1
    while end > start and text[end - 1] in _EDGE_PUNCTUATION:
        end -= 1
    return start, end


def _joined(text: str, position: int) -> bool:
    """Whether ``text[position - 1]`` and ``text[position]`` belong to one word or number
    ("6,692", "11.4", "3\u00a0000": their digit groups joined by a separator)."""
    return (
        (text[position - 1].isalnum() and text[position].isalnum())
        or _separates_digits(text, position - 1)
        or _separates_digits(text, position)
    )


def _separates_digits(text: str, position: int) -> bool:
    return (
        0 < position < len(text) - 1
        and text[position] in _DIGIT_SEPARATORS
        and text[position - 1].isdigit()
        and text[position + 1].isdigit()
    )
