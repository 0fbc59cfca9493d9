"""The two ways to run the sentence-transformer: PyTorch, or an exported ONNX Runtime graph.

Both turn one batch of texts into L2-normalised float32 vectors; batching, ordering and
progress are the :class:`rag.embedding.Embedder`'s job.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import onnxruntime
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

Vectors = npt.NDArray[np.float32]


class Encoder(Protocol):
    """A loaded model that embeds one batch at a time."""

    dimension: int
    max_tokens: int

    def encode(self, texts: Sequence[str]) -> Vectors:
        """L2-normalised vectors, one row per text, in order."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word pieces in each text, without the special tokens."""
        ...


def offline() -> None:
    """Keep Hugging Face libraries off the network."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def load_sentence_transformer(model_path: Path, threads: int) -> SentenceTransformer:
    """The model in ``model_path`` on the CPU, loaded without touching the network."""
    offline()
    # Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning
    # threads made a single query ~20x slower (measured with bench/http_latency.py).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    if not model_path.is_dir():
        raise FileNotFoundError(f"embedding model directory not found: {model_path}")
    return SentenceTransformer(str(model_path), device="cpu", local_files_only=True)


class TorchEncoder:
    """sentence-transformers on PyTorch."""

    def __init__(self, model_path: Path, threads: int) -> None:
        self.model = load_sentence_transformer(model_path, threads)
        dimension = self.model.get_embedding_dimension()
        assert dimension is not None
        self.dimension = int(dimension)
        self.max_tokens = int(self.model.max_seq_length or 0)

    def encode(self, texts: Sequence[str]) -> Vectors:
        vectors: Vectors = self.model.encode(
            list(texts),
            batch_size=max(len(texts), 1),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        encoded = self.model.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]


class OnnxEncoder:
    """An exported graph (see :mod:`rag.onnx_export`: transformer, mean pooling and
    normalisation in one) on ONNX Runtime, fed by the model's own fast tokenizer.

    Needs neither PyTorch nor sentence-transformers at run time.
    """

    def __init__(self, graph: Path, model_path: Path, threads: int) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session: onnxruntime.InferenceSession = onnxruntime.InferenceSession(
            str(graph), options, providers=["CPUExecutionProvider"]
        )
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.dimension = int(self.session.get_outputs()[0].shape[-1])
        self.max_tokens = _max_seq_length(model_path)
        self.counter: Tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        self.counter.no_truncation()
        self.counter.no_padding()
        self.tokenizer: Tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_tokens)
        self.tokenizer.enable_padding()

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(list(texts))
        feed = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        outputs = self.session.run(None, {k: v for k, v in feed.items() if k in self.input_names})
        return np.asarray(outputs[0], dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        encodings = self.counter.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]


def _max_seq_length(model_path: Path) -> int:
    """The longest input the sentence-transformers configuration lets the model read."""
    config = json.loads((model_path / "sentence_bert_config.json").read_text())
    return int(config["max_seq_length"])
