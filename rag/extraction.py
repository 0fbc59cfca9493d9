"""Extractive answering: score the sentences of the retrieved passages against the question.

Each sentence gets four features: the cosine similarity of its vector (pooled from its
passage's token vectors at ingest) to the question's, the share of
the question's content words it contains, the retrieval score of its passage, and
whether it holds something of the kind the question asks for (a number for "how many",
a date for "when", a name for "who"/"where"/"which country"; 1 when the question asks
for no particular kind). A logistic model (weights in a calibration file, fitted by the
evaluation harness on dev questions) turns them into a probability that the sentence
answers the question; below the threshold the pipeline abstains.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from rag.answering import (
    Calibration,
    Candidate,
    PassageHit,
    merge_duplicates,
    term_coverage,
)
from records import Chunk, Span

FEATURES = ("dense", "lexical", "passage", "answer_type")

_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|"
    "forty|fifty|hundred|hundreds|thousand|thousands|million|millions|billion|billions|"
    "dozen|dozens|half|several"
)
_DATE_WORDS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "monday|tuesday|wednesday|thursday|friday|saturday|sunday|today|yesterday|tomorrow|"
    "spring|summer|autumn|winter|century|decade|years?|months?|weeks?|days?|ago"
)
_QUESTION_KINDS = (
    (
        "number",
        re.compile(
            r"\bhow (many|much|long|old|big|large|tall|far|high|often|deep|wide)\b"
            r"|\bwhat (percentage|percent|proportion|number|amount)\b"
        ),
    ),
    (
        "date",
        re.compile(r"^\W*when\b|\b(what|which) (year|date|day|month|time|century|decade|period)\b"),
    ),
    (
        "name",
        re.compile(
            r"^\W*(who|whom|whose|where)\b|\b(which|what)( \w+)? (person|people|man|woman|leader|"
            r"city|cities|country|countries|region|place|state|capital|team|company|"
            r"organi[sz]ation|group|agency)\b"
        ),
    ),
)
_KIND_TOKENS = {
    "number": re.compile(rf"\$?\w*\d[\w.,]*|\b(?:{_NUMBER_WORDS})\b", re.IGNORECASE),
    "date": re.compile(
        rf"\b(?:1\d{{3}}|20\d{{2}}|\d{{1,2}}(?:st|nd|rd|th)?|{_DATE_WORDS})\b", re.IGNORECASE
    ),
    "name": re.compile(r"(?<=[\w,;:)\]\"'\u2019\u201d] )[A-Z][\w'\u2019-]*"),
}
_WORD = re.compile(r"\w+")


def answer_kind(question: str) -> str | None:
    """The kind of answer a question asks for: ``number``, ``date``, ``name`` or ``None``."""
    lowered = question.lower()
    for kind, pattern in _QUESTION_KINDS:
        if pattern.search(lowered):
            return kind
    return None


def offers_kind(sentence: str, kind: str | None, question: str) -> bool:
    """Whether the sentence holds a token of the asked-for kind that the question does not
    already contain (always true when the question asks for no particular kind)."""
    if kind is None:
        return True
    asked = set(_WORD.findall(question.lower()))
    return any(
        match.group().lower().strip(".,") not in asked
        for match in _KIND_TOKENS[kind].finditer(sentence)
    )


class SentenceExtractor:
    """Answers with whole sentences of the retrieved passages, scored by the calibrated
    logistic model over :data:`FEATURES`."""

    features: tuple[str, ...] = FEATURES

    def __init__(self, calibration: Calibration) -> None:
        self.calibration = calibration

    def candidates(
        self, question: str, question_vector: npt.NDArray[np.float32], hits: Sequence[PassageHit]
    ) -> list[Candidate]:
        """Every distinct sentence of the hits, scored, best first.

        A sentence seen in several overlapping passages is kept once, cited from (and with
        the vector pooled in) the passage that scored best; sentences with the same
        wording are merged too.
        """
        seen: dict[tuple[str, int, int], tuple[Span, Chunk, float, float]] = {}
        for hit in sorted(hits, key=lambda h: -h.score):
            similarities = hit.sentence_vectors @ question_vector
            for sentence, similarity in zip(
                hit.chunk.sentence_spans(), similarities.tolist(), strict=True
            ):
                key = (hit.chunk.article_id, sentence.start, sentence.end)
                seen.setdefault(key, (sentence, hit.chunk, hit.score, similarity))
        if not seen:
            return []
        # BM25's shorter stop-word list: the analysis this answerer's calibration was fitted on
        coverage = term_coverage(
            question, [sentence.text for sentence, _, _, _ in seen.values()], stopwords="en"
        )
        kind = answer_kind(question)
        scored: list[Candidate] = []
        for (sentence, chunk, passage_score, similarity), overlap in zip(
            seen.values(), coverage, strict=True
        ):
            features = {
                "dense": similarity,
                "lexical": overlap,
                "passage": passage_score,
                "answer_type": float(offers_kind(sentence.text, kind, question)),
            }
            scored.append(
                Candidate(
                    article_id=chunk.article_id,
                    start=sentence.start,
                    end=sentence.end,
                    text=sentence.text,
                    context=sentence,
                    passage=chunk,
                    features=features,
                    score=self.calibration.probability(features),
                )
            )
        scored.sort(key=lambda c: -c.score)
        return merge_duplicates(scored)
