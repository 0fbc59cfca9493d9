"""The trained span reader, run on ONNX Runtime from the graph shipped in ``models/reader``.

The directory holds ``reader.onnx`` (the fine-tuned BERT with its span head, weights
mostly quantised to int8), the tokenizer files and ``training.json``. Nothing is downloaded:
a missing directory or file is an error naming it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rag.reader.spans import Logits, Reading, read_windows, sentence_starts
from rag.reader.windows import WindowSpec, make_windows

GRAPH_FILE = "reader.onnx"
TRAINING_RECORD = "training.json"


class ReaderUnavailableError(RuntimeError):
    """The reader's files are missing or unreadable; the message names them."""


def reader_fingerprint(model_dir: Path) -> str:
    """Short SHA-256 of the shipped graph: which reader answered (``/health``, manifest)."""
    graph = model_dir / GRAPH_FILE
    if not graph.is_file():
        raise ReaderUnavailableError(f"span reader not found: {graph}")
    digest = hashlib.sha256()
    with graph.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def window_spec(model_dir: Path) -> WindowSpec:
    """The window shape the reader was trained with (from its ``training.json``)."""
    record = json.loads((model_dir / TRAINING_RECORD).read_text())
    return WindowSpec(**record["config"]["window"])


class SpanReader:
    """Reads passages for a question and points at the best span in each.

    ``__init__`` only stores parameters; :meth:`warm_up` loads the tokenizer and the ONNX
    session (once). Windows of all passages go through the graph in one batched call.
    """

    def __init__(self, model_dir: Path, threads: int, max_answer_tokens: int = 30) -> None:
        self.model_dir = model_dir
        self.threads = threads
        self.max_answer_tokens = max_answer_tokens
        self._session: Any = None
        self._tokenizer: Any = None
        self._spec = WindowSpec()

    @cached_property
    def fingerprint(self) -> str:
        """Short hash of the graph file (read once)."""
        return reader_fingerprint(self.model_dir)

    def warm_up(self) -> None:
        """Load the tokenizer and the graph (idempotent)."""
        if self._session is not None:
            return
        import onnxruntime
        from transformers import AutoTokenizer

        from rag.encoders import offline

        graph = self.model_dir / GRAPH_FILE
        if not graph.is_file() or not (self.model_dir / TRAINING_RECORD).is_file():
            raise ReaderUnavailableError(
                f"span reader not found in {self.model_dir} (needs {GRAPH_FILE} and "
                f"{TRAINING_RECORD}); set RAG_ANSWERER=sentence to answer without it"
            )
        offline()
        self._spec = window_spec(self.model_dir)
        self._tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            str(graph), options, providers=["CPUExecutionProvider"]
        )

    def read(
        self,
        question: str,
        passages: Sequence[str],
        starts_of_sentences: Sequence[Sequence[int]] | None = None,
    ) -> list[Reading | None]:
        """The best span of each passage (``None`` for an empty passage), in order."""
        return self.read_pairs([question] * len(passages), passages, starts_of_sentences)

    def read_pairs(
        self,
        questions: Sequence[str],
        passages: Sequence[str],
        starts_of_sentences: Sequence[Sequence[int]] | None = None,
    ) -> list[Reading | None]:
        """The best span for each ``(questions[i], passages[i])`` pair, in order, inside
        one sentence of its passage: ``starts_of_sentences[i]`` (characters) where the
        caller has them (a chunk's), else :func:`sentence_starts`."""
        self.warm_up()
        if not passages:
            return []
        windows = make_windows(self._tokenizer, questions, passages, self._spec)
        if starts_of_sentences is None:
            starts_of_sentences = sentence_starts(passages)
        return read_windows(  # every window in one call
            windows, self._score, starts_of_sentences, max(len(windows), 1), self.max_answer_tokens
        )

    def _score(self, feed: dict[str, npt.NDArray[np.int64]]) -> tuple[Logits, Logits]:
        start_logits, end_logits = self._session.run(["start_logits", "end_logits"], feed)
        return np.asarray(start_logits, np.float32), np.asarray(end_logits, np.float32)
