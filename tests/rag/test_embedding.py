"""The embedder: batching keeps order, and the ONNX backends reproduce PyTorch offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.chunking import SentenceSplitter
from rag.embedding import Embedder, packaged_model_path, pool_sentences, vector_space
from rag.encoders import TokenVectors, load_sentence_transformer
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


def test_pooling_averages_the_tokens_inside_each_sentence() -> None:
    # [CLS] "ab" "cd" | "ef" [SEP]: two sentences, special tokens have empty offsets
    vectors = np.array([[9, 9], [1, 0], [1, 0], [0, 1], [9, 9]], dtype=np.float32)
    offsets = np.array([[0, 0], [0, 2], [2, 4], [5, 7], [0, 0]], dtype=np.int64)
    passage, sentences = pool_sentences(TokenVectors(vectors, offsets), [(0, 4), (5, 7), (8, 9)])
    np.testing.assert_allclose(passage, vectors.mean(axis=0) / np.linalg.norm(vectors.mean(0)))
    np.testing.assert_allclose(sentences[0], [1.0, 0.0])
    np.testing.assert_allclose(sentences[1], [0.0, 1.0])
    np.testing.assert_allclose(sentences[2], passage)  # no tokens (truncated): the passage's


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_passage_vectors_from_tokens_equal_the_model_vectors(
    embedder: Embedder, models_dir: Path, backend: str
) -> None:
    model = embedder if backend == "torch" else onnx_embedder(backend, models_dir)
    spans = [[(0, len(t))] for t in TEXTS]
    pooled = model.embed_passages(TEXTS, spans)
    expected = embedder.embed(TEXTS)
    assert np.min(np.sum(pooled.passages * expected, axis=1)) >= 0.9999
    # one sentence covering the whole text: the mean of its word pieces (without [CLS] and
    # [SEP]) points close to the model's vector once the text has a few words
    for text, sentences, vector in zip(TEXTS, pooled.sentences, expected, strict=True):
        assert sentences.shape == (1, embedder.dimension)
        if len(text.split()) >= 5:
            assert float(sentences[0] @ vector) >= 0.9


def test_sentence_vectors_pick_out_the_sentence_a_question_is_about(embedder: Embedder) -> None:
    text = (
        "The weather in Brussels was mild on Thursday. Macron committed three billion euros "
        "of military aid to Ukraine. The summit ended late in the evening."
    )
    spans = [(s.start, s.end) for s in SentenceSplitter().split(text)]
    assert len(spans) == 3
    pooled = embedder.embed_passages([text], [spans])
    question = embedder.embed_query("What aid did Macron commit?")
    assert int(np.argmax(pooled.sentences[0] @ question)) == 1


def test_loading_the_model_draws_no_progress_bar_even_after_an_earlier_transformers_import(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from transformers.utils import logging

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    logging.enable_progress_bar()  # type: ignore[no-untyped-call]  # as on an earlier import
    try:
        load_sentence_transformer(packaged_model_path(), threads=1)
        assert "Loading weights" not in capfd.readouterr().err
    finally:
        logging.disable_progress_bar()  # type: ignore[no-untyped-call]
