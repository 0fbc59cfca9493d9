"""The embedder: batching keeps order, and the ONNX backends reproduce PyTorch offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.embedding import Embedder, vector_space
from rag.settings import Settings

TEXTS = [
    "Short.",
    "The Senate voted on the nomination this afternoon, and the tally was split evenly.",
    "What aid did Macron commit to Ukraine?",
    "Zelensky presented his victory plan to EU leaders in Brussels on Thursday, asking "
    "for an invitation to join NATO and for permission to strike targets inside Russia.",
    "A",
]


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def onnx_embedder(backend: str, models_dir: Path) -> Embedder:
    settings = Settings(embed_backend=backend, models_dir=models_dir, embed_batch_size=2)
    embedder = Embedder.from_settings(settings)
    embedder.warm_up()
    return embedder


def test_batches_sorted_by_length_keep_the_input_order(embedder: Embedder) -> None:
    batched = Embedder(embedder.model_name, batch_size=2)
    batched._encoder = embedder.encoder  # share the loaded model
    seen: list[int] = []
    vectors = batched.embed(TEXTS, seen.append)
    one_by_one = np.stack([embedder.embed_query(text) for text in TEXTS])
    assert seen == [2, 2, 1]
    np.testing.assert_allclose(vectors, one_by_one, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(("backend", "min_cosine"), [("onnx", 0.9999), ("onnx-int8", 0.98)])
def test_onnx_backends_match_pytorch(
    embedder: Embedder, models_dir: Path, backend: str, min_cosine: float
) -> None:
    onnx = onnx_embedder(backend, models_dir)
    expected = embedder.embed(TEXTS)
    got = onnx.embed(TEXTS)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.min(np.sum(got * expected, axis=1)) >= min_cosine
    assert onnx.count_tokens(TEXTS) == embedder.count_tokens(TEXTS)
    assert (onnx.dimension, onnx.max_tokens) == (embedder.dimension, embedder.max_tokens)


def test_export_is_cached(models_dir: Path) -> None:
    onnx_embedder("onnx", models_dir)
    graphs = sorted(models_dir.rglob("*.onnx"))
    stamps = [g.stat().st_mtime_ns for g in graphs]
    onnx_embedder("onnx", models_dir)
    assert graphs and [g.stat().st_mtime_ns for g in graphs] == stamps
    assert not list(models_dir.rglob("tmp*"))


def test_vector_spaces() -> None:
    assert vector_space("torch") == vector_space("onnx") != vector_space("onnx-int8")
