"""The two ways to run the sentence-transformer: PyTorch, or an exported ONNX Runtime graph.

Both turn one batch of texts into L2-normalised float32 vectors; batching, ordering and
progress are the :class:`rag.embedding.Embedder`'s job.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import onnxruntime
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

Vectors = npt.NDArray[np.float32]
T = TypeVar("T")
MICRO_BATCH = 2
"""Texts per ONNX Runtime call (see :class:`OnnxEncoder`)."""
SENTENCE_OUTPUT = "sentence_embedding"
TOKEN_OUTPUT = "token_embeddings"


@dataclass(frozen=True)
class TokenVectors:
    """The model's last hidden states for one text, before pooling.

    ``vectors`` has a row per token, special tokens included; ``offsets`` gives each
    token's ``(start, end)`` characters in the text (``(0, 0)`` for special tokens).
    """

    vectors: Vectors
    offsets: npt.NDArray[np.int64]


class Encoder(Protocol):
    """A loaded model that embeds one batch at a time."""

    dimension: int
    max_tokens: int

    def encode(self, texts: Sequence[str]) -> Vectors:
        """L2-normalised vectors, one row per text, in order."""
        ...

    def encode_tokens(self, texts: Sequence[str]) -> list[TokenVectors]:
        """Token vectors of each text, in order (mean-pooled and normalised, they are
        what :meth:`encode` returns)."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word pieces in each text, without the special tokens."""
        ...


def offline() -> None:
    """Keep Hugging Face libraries off the network, and their progress bars off the
    terminal unless ``HF_HUB_DISABLE_PROGRESS_BARS`` says otherwise."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1" and "transformers" in sys.modules:
        # transformers reads the variable once, when imported: tell it if that was earlier
        from transformers.utils import logging

        logging.disable_progress_bar()  # type: ignore[no-untyped-call]


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

    def encode_tokens(self, texts: Sequence[str]) -> list[TokenVectors]:
        hidden = self.model.encode(
            list(texts),
            batch_size=max(len(texts), 1),
            output_value="token_embeddings",
            convert_to_numpy=False,
            show_progress_bar=False,
        )
        offsets = self.model.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.max_tokens,
            return_offsets_mapping=True,
        )["offset_mapping"]
        found = []
        for vectors, spans in zip(hidden, offsets, strict=True):
            array = np.asarray(vectors.float().numpy(), dtype=np.float32)
            if len(array) != len(spans):
                raise RuntimeError("token vectors and tokenizer offsets do not line up")
            found.append(TokenVectors(array, np.asarray(spans, dtype=np.int64)))
        return found

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        encoded = self.model.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]


class OnnxEncoder:
    """An exported graph (see :mod:`rag.onnx_export`: transformer, mean pooling and
    normalisation in one) on ONNX Runtime, fed by the model's own fast tokenizer.

    ``threads`` single-threaded sessions work in parallel on micro-batches of
    :data:`MICRO_BATCH` texts: small batches keep the activations in the CPU cache, and
    separate sessions skip the thread pool's barrier after every operator. On 2 cores the
    int8 graph embedded news chunks at 2.7-2.9x PyTorch's rate this way, against 1.7-1.9x
    as one two-thread session on batches of 32 (a probe run while building this).
    Needs neither PyTorch nor sentence-transformers at run time.
    """

    def __init__(self, graph: Path, model_path: Path, threads: int) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # not the loader's notes on unused constants
        self.sessions: list[onnxruntime.InferenceSession] = [
            onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
            for _ in range(max(threads, 1))
        ]
        self.workers = ThreadPoolExecutor(len(self.sessions), thread_name_prefix="onnx")
        self.input_names = {i.name for i in self.sessions[0].get_inputs()}
        self.dimension = int(self.sessions[0].get_outputs()[0].shape[-1])
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
        return np.concatenate(self._in_parallel(texts, self._sentence_vectors))

    def encode_tokens(self, texts: Sequence[str]) -> list[TokenVectors]:
        return [tokens for part in self._in_parallel(texts, self._token_vectors) for tokens in part]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        encodings = self.counter.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    def _in_parallel(
        self, texts: Sequence[str], run: Callable[[onnxruntime.InferenceSession, list[str]], T]
    ) -> list[T]:
        """``run`` on each micro-batch of ``texts``, spread over the sessions; the results
        in the order of the micro-batches."""
        parts = [list(texts[i : i + MICRO_BATCH]) for i in range(0, len(texts), MICRO_BATCH)]
        count = len(self.sessions)
        if len(parts) == 1 or count == 1:
            return [run(self.sessions[0], part) for part in parts]
        results: list[T | None] = [None] * len(parts)

        def work(worker: int) -> None:
            for index in range(worker, len(parts), count):
                results[index] = run(self.sessions[worker], parts[index])

        for future in [self.workers.submit(work, worker) for worker in range(count)]:
            future.result()
        return [result for result in results if result is not None]

    def _sentence_vectors(self, session: onnxruntime.InferenceSession, texts: list[str]) -> Vectors:
        (vectors,) = session.run([SENTENCE_OUTPUT], self._feed(texts)[0])
        return np.asarray(vectors, dtype=np.float32)

    def _token_vectors(
        self, session: onnxruntime.InferenceSession, texts: list[str]
    ) -> list[TokenVectors]:
        feed, encodings = self._feed(texts)
        (hidden,) = session.run([TOKEN_OUTPUT], feed)
        found = []
        for row, encoding in enumerate(encodings):
            length = sum(encoding.attention_mask)  # padding comes last
            found.append(
                TokenVectors(
                    np.asarray(hidden[row, :length], dtype=np.float32),
                    np.asarray(encoding.offsets[:length], dtype=np.int64).reshape(-1, 2),
                )
            )
        return found

    def _feed(self, texts: list[str]) -> tuple[dict[str, npt.NDArray[np.int64]], list[Any]]:
        encodings = self.tokenizer.encode_batch(texts)
        feed = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        return {k: v for k, v in feed.items() if k in self.input_names}, encodings


def _max_seq_length(model_path: Path) -> int:
    """The longest input the sentence-transformers configuration lets the model read."""
    config = json.loads((model_path / "sentence_bert_config.json").read_text())
    return int(config["max_seq_length"])
