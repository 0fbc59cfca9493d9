"""The manifest records the embedding backend and vector index; incompatible vectors are
refused on load with a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.store import IndexStore, IndexStoreError, NewArticle
from rag.articles import Article
from rag.chunking import Chunk

DIM = 4


def one_article() -> NewArticle:
    article = Article.create("Title", "Body text.")
    chunk = Chunk(article.id, 0, 0, len(article.text), article.text, ((0, len(article.text)),))
    vector = np.eye(1, DIM, dtype=np.float32)
    return NewArticle(article, [chunk], vector, [vector])


def build(directory: Path, backend: str) -> None:
    store = IndexStore(directory, "m", DIM, backend=backend)
    with store.writing() as base:
        snapshot = store.commit(base, add=[one_article()])
    assert snapshot.manifest["embed_backend"] == backend
    assert snapshot.manifest["vector_index"]["type"] == "IDMap2,Flat"


def test_float32_backends_share_an_index(tmp_path: Path) -> None:
    build(tmp_path, "torch")
    assert IndexStore(tmp_path, "m", DIM, backend="onnx").load() is not None


@pytest.mark.parametrize(("built", "loading"), [("onnx-int8", "torch"), ("torch", "onnx-int8")])
def test_int8_and_float32_vectors_do_not_mix(tmp_path: Path, built: str, loading: str) -> None:
    build(tmp_path, built)
    with pytest.raises(IndexStoreError, match=f"RAG_EMBED_BACKEND={built}"):
        IndexStore(tmp_path, "m", DIM, backend=loading).load()
