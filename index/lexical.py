"""The lexical (BM25) side of the index, built with bm25s."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np
import numpy.typing as npt
import Stemmer

BM25_PARAMS = {"k1": 1.2, "b": 0.75, "method": "lucene"}
_STEMMER = Stemmer.Stemmer("english")


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Lower-case, drop English stop words and stem: the analysis used for BM25."""
    tokens: list[list[str]] = bm25s.tokenize(
        list(texts), stopwords="en", stemmer=_STEMMER, return_ids=False, show_progress=False
    )
    return tokens


class LexicalIndex:
    """BM25 over chunk texts; document ``i`` of the BM25 matrix is chunk ``rowids[i]``."""

    def __init__(self, retriever: bm25s.BM25 | None, rowids: npt.NDArray[np.int64]) -> None:
        self.retriever = retriever
        self.rowids = rowids

    @staticmethod
    def build(rowids: Sequence[int], texts: Sequence[str]) -> LexicalIndex:
        """Index the given chunk texts (an empty corpus gives an empty index)."""
        ids = np.asarray(rowids, dtype=np.int64)
        if len(ids) == 0:
            return LexicalIndex(None, ids)
        retriever = bm25s.BM25(**BM25_PARAMS)
        retriever.index(tokenize(texts), show_progress=False)
        return LexicalIndex(retriever, ids)

    @property
    def size(self) -> int:
        """Number of indexed chunks."""
        return len(self.rowids)

    def scores(self, query: str) -> npt.NDArray[np.float32]:
        """BM25 score of every indexed chunk for the query (zeros when nothing matches)."""
        query_tokens = tokenize([query])[0]
        if self.retriever is None or not query_tokens:
            return np.zeros(self.size, dtype=np.float32)
        known = [t for t in query_tokens if t in self.retriever.vocab_dict]
        if not known:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self.retriever.get_scores(known), dtype=np.float32)

    def save(self, directory: Path) -> None:
        """Write the BM25 arrays and the row-id map into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "rowids.npy", self.rowids)
        if self.retriever is not None:
            self.retriever.save(str(directory))
        (directory / "lexical.json").write_text(
            json.dumps({"params": BM25_PARAMS, "documents": self.size, "stemmer": "english"})
        )

    @staticmethod
    def load(directory: Path) -> LexicalIndex:
        """Read an index written by :meth:`save` (arrays memory-mapped); a damaged file
        raises ``ValueError`` naming it."""
        rowids_path = directory / "rowids.npy"
        try:
            rowids = np.load(rowids_path)
        except Exception as error:
            raise ValueError(f"{rowids_path}: {error}") from None
        if len(rowids) == 0:
            return LexicalIndex(None, rowids)
        try:
            retriever = bm25s.BM25.load(str(directory), mmap=True)
        except Exception as error:
            raise ValueError(f"BM25 files in {directory}: {error}") from None
        return LexicalIndex(retriever, rowids)
