"""The records' compact encodings: 4-bit sentence vectors and compressed article texts,
stores written before them (format 3), which are read as they are, and dense search
over 8-bit IVF lists re-scored with the records' vectors."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from index import vectors as vectors_module
from index.records import (
    article_text,
    decode_chunk_vectors,
    dequantise,
    encode_chunk_vectors,
    quantise,
    rounded_chunk_vectors,
    stored_text,
)
from index.store import FORMAT_VERSION, EmbeddedStore, MergePolicy
from tests.index.articles import IDENTITY, new_article


@pytest.mark.parametrize("dimension", [2, 7, 384])
def test_sentence_vectors_come_back_within_half_a_step(dimension: int) -> None:
    vectors = np.random.default_rng(dimension).standard_normal((6, dimension)).astype(np.float32)
    vectors[2] = 0.0
    codes, scales = quantise(vectors)
    assert len(codes) == 6 * ((dimension + 1) // 2) and len(scales) == 6 * 4
    restored = dequantise(codes, scales, dimension)
    half_step = np.abs(vectors).max(axis=1, keepdims=True) / 16
    assert restored.shape == vectors.shape
    assert np.all(np.abs(restored - vectors) <= half_step * (1 + 1e-5) + 1e-12)
    assert np.abs(restored[2]).max() < 1e-12  # a zero vector stays (about) zero


def test_int8_sentence_codes_of_earlier_stores_still_decode() -> None:
    vectors = np.random.default_rng(0).standard_normal((3, 10)).astype(np.float32)
    scales = np.abs(vectors).max(axis=1) / 127
    codes = np.rint(vectors / scales[:, None]).astype(np.int8)
    restored = dequantise(codes.tobytes(), scales.astype("<f4").tobytes(), 10)
    np.testing.assert_allclose(restored, vectors, atol=float(scales.max()) / 2 + 1e-7)


def test_chunk_vectors_are_int8_with_a_power_of_two_scale_exact_in_float16() -> None:
    vectors = np.random.default_rng(3).standard_normal((5, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[4] = 0.0
    stored = encode_chunk_vectors(vectors)
    assert [len(blob) for blob in stored] == [385] * 5
    restored = decode_chunk_vectors(stored, 384)
    np.testing.assert_array_equal(restored, rounded_chunk_vectors(vectors))
    np.testing.assert_array_equal(restored.astype(np.float16).astype(np.float32), restored)
    step = 2 * np.abs(vectors).max(axis=1, keepdims=True) / 127  # the scale at most doubles
    assert np.all(np.abs(restored - vectors) <= step / 2 + 1e-12)
    assert not restored[4].any()
    earlier = [vectors[0].astype("<f2").tobytes(), stored[1]]  # float16, as format 3 kept
    np.testing.assert_allclose(decode_chunk_vectors(earlier, 384), vectors[:2], atol=2e-3)
    assert decode_chunk_vectors([], 384).shape == (0, 384)


def test_article_texts_are_kept_compressed_when_that_is_smaller() -> None:
    news = "Élysée talks: the minister pledged aid to the harbour towns. " * 40
    packed = stored_text(news)
    assert isinstance(packed, bytes) and len(packed) < len(news.encode()) / 4
    assert article_text(packed) == news
    assert stored_text("Short.") == "Short." and article_text("Short.") == "Short."


def test_a_store_of_format_3_is_read_and_marked_4_by_its_next_write(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, IDENTITY)
    old = new_article(1, chunks=3)
    with store.writing() as writer:
        writer.add([old])
    records = sqlite3.connect(tmp_path / "current" / "records.sqlite")
    assert isinstance(records.execute("SELECT text FROM articles").fetchone()[0], bytes)
    # what format 3 wrote: plain text, float16 chunk vectors, int8 sentence vectors
    step = np.abs(old.vectors).max(axis=1) / 127
    for rowid, vector, scale in zip(range(1, 4), old.vectors, step, strict=True):
        codes = np.rint(vector / scale).astype(np.int8).tobytes()
        scale_bytes = np.float32(scale).astype("<f4").tobytes()
        records.execute(
            "UPDATE chunks SET vector = ?, sentence_vectors = ?, sentence_scales = ?"
            " WHERE rowid = ?",
            (vector.astype("<f2").tobytes(), codes, scale_bytes, rowid),
        )
    records.execute("UPDATE articles SET text = ?", (old.article.text,))
    records.execute("UPDATE meta SET value = '3' WHERE key = 'format_version'")
    records.commit()
    records.close()

    reopened = EmbeddedStore(tmp_path, IDENTITY)
    view = reopened.view()
    assert view is not None and reopened.check() == []
    assert view.article("a00001") == old.article
    stored = sorted(view.all_chunks(), key=lambda s: s.rowid)
    assert [s.chunk for s in stored] == list(old.chunks)
    sentence_vectors = view.sentence_vectors([s.rowid for s in stored])
    for s, vector in zip(stored, old.vectors, strict=True):
        np.testing.assert_allclose(sentence_vectors[s.rowid][0], vector, atol=0.01)
        scores, rowids = view.dense_search(vector, 1)
        assert rowids.tolist() == [s.rowid] and scores[0] == pytest.approx(1.0, abs=2e-3)
    with reopened.writing() as writer:
        writer.add([new_article(2)])
    meta = dict(
        sqlite3.connect(tmp_path / "current" / "records.sqlite").execute("SELECT * FROM meta")
    )
    assert json.loads(meta["format_version"]) == FORMAT_VERSION
    newest = reopened.view()
    assert newest is not None and reopened.check() == []
    assert {a.id for a, _ in newest.articles()} == {"a00001", "a00002"}
    assert newest.chunks([stored[1].rowid])[stored[1].rowid] == stored[1]


def test_dense_search_over_8_bit_ivf_lists_returns_the_records_exact_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vectors_module, "IVF_MIN_VECTORS", 300)
    store = EmbeddedStore(tmp_path, IDENTITY, MergePolicy(min_changes=10**9))
    items = [new_article(n, chunks=4) for n in range(100)]
    with store.writing() as writer:
        writer.add(items)
    assert store.merge(force=True)
    view = store.view()
    assert view is not None and view.segments.base.vectors.description["type"] == "IVF,SQ8"
    rowids = np.asarray(sorted(s.rowid for s in view.all_chunks()), dtype=np.int64)
    kept = rounded_chunk_vectors(np.concatenate([item.vectors for item in items]))
    rng = np.random.default_rng(4)
    for _ in range(10):
        query = rng.standard_normal(kept.shape[1], dtype=np.float32)
        query /= np.linalg.norm(query)
        exact = kept @ query
        scores, found = view.dense_search(query, 5)
        np.testing.assert_allclose(scores, exact[np.searchsorted(rowids, found)], atol=1e-6)
        assert found[0] == rowids[np.argmax(exact)]
        similar = view.similarity(query, rowids[:50])
        np.testing.assert_allclose(similar, exact[:50], atol=1e-6)
