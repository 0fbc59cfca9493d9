"""Extractive answering: score the sentences of the retrieved passages against the question.

Each sentence gets three features: its cosine similarity to the question, the share of
the question's content words it contains, and the retrieval score of its passage. A
logistic model (weights in a calibration file, fitted by the evaluation harness) turns
them into a probability that the sentence answers the question; below the threshold the
pipeline abstains.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from index.lexical import tokenize
from rag.chunking import Chunk, SentenceSplitter
from rag.embedding import Embedder

FEATURES = ("dense", "lexical", "passage")


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
    """A retrieved chunk and its retrieval score, as input to extraction."""

    chunk: Chunk
    score: float


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


class SentenceExtractor:
    """Picks the sentences that best answer a question from retrieved passages."""

    def __init__(
        self,
        embedder: Embedder,
        splitter: SentenceSplitter,
        calibration: Calibration,
        cache_size: int = 50_000,
    ) -> None:
        self.embedder = embedder
        self.splitter = splitter
        self.calibration = calibration
        self.cache_size = cache_size
        self._vectors: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()

    def candidates(
        self, question: str, question_vector: npt.NDArray[np.float32], hits: Sequence[PassageHit]
    ) -> list[SentenceCandidate]:
        """Every distinct sentence of the hits, scored, best first.

        A sentence seen in several overlapping passages is kept once, cited from the
        passage that scored best; sentences with the same wording are merged too.
        """
        seen: dict[tuple[str, int, int], tuple[str, Chunk, float]] = {}
        for hit in sorted(hits, key=lambda h: -h.score):
            chunk = hit.chunk
            for sentence in self.splitter.split(chunk.text):
                key = (chunk.article_id, chunk.start + sentence.start, chunk.start + sentence.end)
                seen.setdefault(key, (sentence.text, chunk, hit.score))
        if not seen:
            return []
        texts = [text for text, _, _ in seen.values()]
        similarities = self._embed(texts) @ question_vector
        question_terms = set(tokenize([question])[0])
        sentence_terms = tokenize(texts)
        scored: list[SentenceCandidate] = []
        for (key, (text, chunk, passage_score)), similarity, terms in zip(
            seen.items(), similarities, sentence_terms, strict=True
        ):
            overlap = (
                len(question_terms & set(terms)) / len(question_terms) if question_terms else 0.0
            )
            features = {"dense": float(similarity), "lexical": overlap, "passage": passage_score}
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
        """The best sentences at or above the abstention threshold (possibly none)."""
        return [
            c
            for c in self.candidates(question, question_vector, hits)[:limit]
            if c.score >= self.calibration.threshold
        ]

    def _embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            for text, vector in zip(missing, self.embedder.embed(missing), strict=True):
                self._vectors[text] = vector
            while len(self._vectors) > self.cache_size:
                self._vectors.popitem(last=False)
        for text in texts:
            self._vectors.move_to_end(text)
        return np.stack([self._vectors[t] for t in texts])


def _merge_same_wording(candidates: list[SentenceCandidate]) -> list[SentenceCandidate]:
    kept: list[SentenceCandidate] = []
    seen: set[str] = set()
    for candidate in candidates:
        wording = " ".join(candidate.text.lower().split())
        if wording not in seen:
            seen.add(wording)
            kept.append(candidate)
    return kept
