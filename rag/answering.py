"""What every answerer shares: its input (retrieved passages), its output (scored,
verbatim candidates with their enclosing sentence), and the calibrated score."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from index.lexical import tokenize
from records import Chunk, Span


@dataclass(frozen=True)
class Calibration:
    """Logistic model from an answerer's features to the probability of a right answer,
    and the threshold below which the service abstains."""

    bias: float
    weights: dict[str, float]
    threshold: float

    @property
    def features(self) -> tuple[str, ...]:
        """The feature names, in the order the weights were fitted."""
        return tuple(self.weights)

    def probability(self, features: dict[str, float]) -> float:
        """Calibrated score in [0, 1]."""
        logit = self.bias + sum(w * features[name] for name, w in self.weights.items())
        return 1.0 / (1.0 + math.exp(-max(min(logit, 50.0), -50.0)))

    @staticmethod
    def load(path: Path) -> Calibration:
        """Read a calibration written by :meth:`save`."""
        data = json.loads(path.read_text())
        return Calibration(
            bias=float(data["bias"]),
            weights={name: float(w) for name, w in data["weights"].items()},
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
    sentence, pooled at ingest), as input to an answerer."""

    chunk: Chunk
    score: float
    sentence_vectors: npt.NDArray[np.float32]


@dataclass(frozen=True)
class Candidate:
    """A possible answer: verbatim text of one article (``[start, end)`` in its text),
    the sentence(s) around it, the passage it was read in, and its calibrated score."""

    article_id: str
    start: int
    end: int
    text: str
    context: Span
    """The enclosing sentence (or sentences, when the answer crosses a boundary)."""
    passage: Chunk
    features: dict[str, float]
    score: float


class Answerer(Protocol):
    """Turns a question and its retrieved passages into scored answer candidates."""

    features: tuple[str, ...]
    """The names of the features each candidate carries (what calibration weighs)."""
    calibration: Calibration

    def candidates(
        self, question: str, question_vector: npt.NDArray[np.float32], hits: Sequence[PassageHit]
    ) -> list[Candidate]:
        """Every candidate, scored, best first, near-duplicates merged."""
        ...


def term_coverage(question: str, texts: Sequence[str], stopwords: str = "en_plus") -> list[float]:
    """For each text, the share of the question's terms it contains (lower case, stemmed,
    without ``stopwords``: by default a list that drops question words such as "how" and
    "did"); 0 when the question has no such term. An answer read in a passage that lacks
    the question's names is seldom the answer."""
    question_terms = set(tokenize([question], stopwords)[0])
    if not question_terms:
        return [0.0] * len(texts)
    return [
        len(question_terms & set(terms)) / len(question_terms)
        for terms in tokenize(list(texts), stopwords)
    ]


_WORD = r"(?:[A-Z](?:[\w&-]|\.(?=\w))+|\d(?:[,.]?\d)*%?(?!\w))"
NAMED = re.compile(rf"(?<!\w){_WORD}(?:\s+{_WORD})*")
"""A name or number in a question: a run of words that each start with a capital or a digit."""


def named_terms(question: str) -> list[re.Match[str]]:
    """The names and numbers in a question, less its first word (capitalised anyway)."""
    return [match for match in NAMED.finditer(question) if match.start() > 0]


def named_coverage(question: str, texts: Sequence[str]) -> list[float]:
    """For each text, the share of the question's names and numbers it contains (ignoring
    case); 1 when the question has none. A passage about France read for "How much has
    the UK promised?" holds the topic, not what is asked about."""
    terms = [match.group().lower() for match in named_terms(question)]
    if not terms:
        return [1.0] * len(texts)
    lowered = [text.lower() for text in texts]
    return [sum(term in text for term in terms) / len(terms) for text in lowered]


def confident(candidates: Sequence[Candidate], threshold: float, limit: int) -> list[Candidate]:
    """The first ``limit`` candidates, less those scored below ``threshold``."""
    return [c for c in candidates[:limit] if c.score >= threshold]


def sentence_context(chunk: Chunk, start: int, end: int) -> Span:
    """The chunk's sentences that ``[start, end)`` (article offsets) touches, as one span."""
    touched = [s for s in chunk.sentence_spans() if s.start < end and s.end > start]
    if not touched:
        return Span(start, end, chunk.text[start - chunk.start : end - chunk.start])
    first, last = touched[0].start, touched[-1].end
    return Span(first, last, chunk.text[first - chunk.start : last - chunk.start])


def merge_duplicates(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Keep the best of candidates that overlap in the same article (overlapping chunks
    read the same words twice) or say the same words."""
    kept: list[Candidate] = []
    wordings: set[str] = set()
    for candidate in candidates:
        wording = " ".join(candidate.text.lower().split())
        overlaps = any(
            k.article_id == candidate.article_id
            and k.start < candidate.end
            and candidate.start < k.end
            for k in kept
        )
        if not overlaps and wording not in wordings:
            wordings.add(wording)
            kept.append(candidate)
    return kept
