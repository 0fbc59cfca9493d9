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

import dataclasses
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from index.lexical import tokenize
from rag.chunking import Chunk

FEATURES = ("dense", "lexical", "passage", "answer_type")
Granularity = Literal["sentence", "span"]

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
_JOINER = re.compile(r"(?:,?\s+(?:and|or|of|the|to)\s+|,\s+|;\s+|\s+)")
_UNIT = re.compile(r"\s+(?:[a-z][a-z-]*|[A-Z][a-z]+)(?:\s+[a-z][a-z-]*)?")
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


@dataclass(frozen=True)
class Calibration:
    """Logistic model from sentence features to the probability of a right answer."""

    bias: float
    weights: dict[str, float]
    threshold: float

    def probability(self, features: dict[str, float]) -> float:
        """Calibrated score in [0, 1]."""
        logit = self.bias + sum(self.weights[name] * features[name] for name in FEATURES)
        return 1.0 / (1.0 + math.exp(-max(min(logit, 50.0), -50.0)))

    @staticmethod
    def load(path: Path) -> Calibration:
        """Read a calibration written by :meth:`save`."""
        data = json.loads(path.read_text())
        return Calibration(
            bias=float(data["bias"]),
            weights={name: float(data["weights"][name]) for name in FEATURES},
            threshold=float(data["threshold"]),
        )

    def save(self, path: Path, **provenance: object) -> None:
        """Write the calibration, with a note of how it was obtained."""
        payload = {
            "bias": self.bias,
            "weights": self.weights,
            "threshold": self.threshold,
            "provenance": provenance,
        }
        path.write_text(json.dumps(payload, indent=2) + "\n")


@dataclass(frozen=True)
class PassageHit:
    """A retrieved chunk, its retrieval score and its sentence vectors (a row per
    sentence, pooled at ingest), as input to extraction."""

    chunk: Chunk
    score: float
    sentence_vectors: npt.NDArray[np.float32]


@dataclass(frozen=True)
class SentenceCandidate:
    """A sentence of a retrieved passage, scored; offsets are into the article text."""

    article_id: str
    start: int
    end: int
    text: str
    passage: Chunk
    features: dict[str, float]
    score: float


def answer_span(sentence: str, kind: str | None, question: str) -> tuple[int, int] | None:
    """Offsets, inside ``sentence``, of the run of asked-for tokens (``Tambov, Kazan, and
    Perm``; a number with its unit, ``35 billion euros``) nearest to the words the sentence
    shares with the question; ``None`` when the question asks for no particular kind or
    the sentence has nothing new of that kind."""
    if kind is None:
        return None
    asked = set(_WORD.findall(question.lower()))
    runs: list[list[int]] = []
    for match in _KIND_TOKENS[kind].finditer(sentence):
        if match.group().lower().strip(".,") in asked:
            continue
        start, end = match.start(), match.end()
        if runs and _JOINER.fullmatch(sentence[runs[-1][1] : start]):
            runs[-1][1] = end
        else:
            runs.append([start, end])
    if not runs:
        return None
    if kind == "number":
        for run in runs:
            unit = _UNIT.match(sentence, run[1])
            if unit is not None:
                run[1] = unit.end()
    anchors = [m.start() for m in _WORD.finditer(sentence) if m.group().lower() in asked]
    start, end = min(runs, key=lambda r: min((abs(a - r[0]) for a in anchors), default=0))
    return start, len(sentence[:end].rstrip(".,;:"))


class SentenceExtractor:
    """Picks the sentences that best answer a question from retrieved passages."""

    def __init__(self, calibration: Calibration, granularity: Granularity = "sentence") -> None:
        self.calibration = calibration
        self.granularity = granularity

    def candidates(
        self, question: str, question_vector: npt.NDArray[np.float32], hits: Sequence[PassageHit]
    ) -> list[SentenceCandidate]:
        """Every distinct sentence of the hits, scored, best first.

        A sentence seen in several overlapping passages is kept once, cited from (and with
        the vector pooled in) the passage that scored best; sentences with the same
        wording are merged too.
        """
        seen: dict[tuple[str, int, int], tuple[str, Chunk, float, float]] = {}
        for hit in sorted(hits, key=lambda h: -h.score):
            similarities = hit.sentence_vectors @ question_vector
            for sentence, similarity in zip(
                hit.chunk.sentence_spans(), similarities.tolist(), strict=True
            ):
                key = (hit.chunk.article_id, sentence.start, sentence.end)
                seen.setdefault(key, (sentence.text, hit.chunk, hit.score, similarity))
        if not seen:
            return []
        texts = [text for text, _, _, _ in seen.values()]
        question_terms = set(tokenize([question])[0])
        sentence_terms = tokenize(texts)
        kind = answer_kind(question)
        scored: list[SentenceCandidate] = []
        for (key, (text, chunk, passage_score, similarity)), terms in zip(
            seen.items(), sentence_terms, strict=True
        ):
            overlap = (
                len(question_terms & set(terms)) / len(question_terms) if question_terms else 0.0
            )
            features = {
                "dense": similarity,
                "lexical": overlap,
                "passage": passage_score,
                "answer_type": float(offers_kind(text, kind, question)),
            }
            scored.append(
                SentenceCandidate(
                    article_id=key[0],
                    start=key[1],
                    end=key[2],
                    text=text,
                    passage=chunk,
                    features=features,
                    score=self.calibration.probability(features),
                )
            )
        scored.sort(key=lambda c: -c.score)
        return _merge_same_wording(scored)

    def answers(
        self,
        question: str,
        question_vector: npt.NDArray[np.float32],
        hits: Sequence[PassageHit],
        limit: int,
    ) -> list[SentenceCandidate]:
        """The best sentences at or above the abstention threshold (possibly none); with
        ``span`` granularity each is narrowed to its answer span where one is found."""
        chosen = [
            c
            for c in self.candidates(question, question_vector, hits)[:limit]
            if c.score >= self.calibration.threshold
        ]
        if self.granularity == "sentence":
            return chosen
        kind = answer_kind(question)
        return _merge_same_wording(
            [_narrow(c, answer_span(c.text, kind, question)) for c in chosen]
        )


def _narrow(candidate: SentenceCandidate, span: tuple[int, int] | None) -> SentenceCandidate:
    if span is None:
        return candidate
    start, end = span
    return dataclasses.replace(
        candidate,
        start=candidate.start + start,
        end=candidate.start + end,
        text=candidate.text[start:end],
    )


def _merge_same_wording(candidates: list[SentenceCandidate]) -> list[SentenceCandidate]:
    kept: list[SentenceCandidate] = []
    seen: set[str] = set()
    for candidate in candidates:
        wording = " ".join(candidate.text.lower().split())
        if wording not in seen:
            seen.add(wording)
            kept.append(candidate)
    return kept
