"""The vector index: exact below a size, IVF above it, and both behave the same way."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt
import pytest

from index import vectors as vectors_module
from index.records import rounded_chunk_vectors
from index.vectors import VectorIndex

DIM = 16
SQ8_TOLERANCE = 0.015
"""How far a dot product of 16-dimensional unit vectors may move when one is kept as 8-bit
codes (each value within half a step of 1/255 of its dimension's trained range)."""


def unit_vectors(count: int, seed: int = 0) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((count, DIM)).astype(np.float32)
    return data / np.linalg.norm(data, axis=1, keepdims=True)


@pytest.fixture
def small_threshold(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(vectors_module, "IVF_MIN_VECTORS", 400)
    return 400


def filled(count: int) -> tuple[VectorIndex, npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """An exact index of ``count`` vectors at the records' precision."""
    data = rounded_chunk_vectors(unit_vectors(count))
    ids = np.arange(count, dtype=np.int64) * 3 + 1
    index = VectorIndex.empty(DIM)
    index.add(data, ids)
    return index, data, ids


def test_small_index_stays_exact(small_threshold: int) -> None:
    index, _, _ = filled(small_threshold - 1)
    assert index.tuned() is index
    assert index.description["type"] == "IDMap2,Flat"


def test_large_index_becomes_ivf_and_still_finds_every_vector(
    small_threshold: int, tmp_path: Path
) -> None:
    index, data, ids = filled(small_threshold * 2)
    ivf = index.tuned()
    assert ivf.is_ivf and ivf.size == len(ids)
    description = ivf.description
    assert description["type"] == "IVF,SQ8" and description["nprobe"] >= 1
    ivf.save(tmp_path / "v.faiss")
    loaded = VectorIndex.load(tmp_path / "v.faiss")
    for row in (0, 17, len(ids) - 1):
        _, found = loaded.search(data[row], 1)
        assert found.tolist() == [ids[row]]
    similarity = loaded.similarity(data[5], ids[[5, 6]])  # from 8-bit codes: a value
    assert similarity[0] == pytest.approx(float(data[5] @ data[5]), abs=SQ8_TOLERANCE)
    assert similarity[1] == pytest.approx(float(data[5] @ data[6]), abs=SQ8_TOLERANCE)


def test_memory_mapped_ivf_copies_then_removes_and_filters(
    small_threshold: int, tmp_path: Path
) -> None:
    index, data, ids = filled(small_threshold * 2)
    index.tuned().save(tmp_path / "v.faiss")
    loaded = VectorIndex.load(tmp_path / "v.faiss")
    changed = loaded.copy()
    changed.remove([int(ids[3])])
    assert (changed.size, loaded.size) == (len(ids) - 1, len(ids))
    assert int(ids[3]) not in changed.search(data[3], 5)[1].tolist()
    allowed = {int(ids[3]), int(ids[40])}
    assert set(loaded.search(data[3], 5, allowed)[1].tolist()) <= allowed
    assert loaded.search(data[3], 5, allowed)[1][0] == ids[3]


def test_ivf_shrinks_back_to_exact(small_threshold: int) -> None:
    index, data, ids = filled(small_threshold * 2)
    ivf = index.tuned()
    ivf.remove([int(i) for i in ids[: len(ids) - 10]])
    exact = ivf.tuned()
    assert not exact.is_ivf and exact.size == 10
    assert exact.search(data[-1], 1)[1].tolist() == [ids[-1]]


@pytest.mark.parametrize("lists", ["Flat", "SQfp16"])
def test_a_segment_with_float_lists_is_read_and_reclustered_into_8_bit_lists_when_copied(
    tmp_path: Path, lists: str
) -> None:
    data = unit_vectors(600).astype(np.float16).astype(np.float32)
    ids = np.arange(600, dtype=np.int64) * 7
    older = faiss.index_factory(DIM, f"IVF20,{lists}", faiss.METRIC_INNER_PRODUCT)
    older.by_residual = False
    older.train(data)
    older.set_direct_map_type(faiss.DirectMap.Hashtable)
    older.add_with_ids(data, ids)
    older.nprobe = 4
    faiss.write_index(older, str(tmp_path / "old.faiss"))
    loaded = VectorIndex.load(tmp_path / "old.faiss")
    assert loaded.description["type"] == f"IVF,{lists}"
    np.testing.assert_array_equal(loaded.similarity(data[3], ids[:50]), data[:50] @ data[3])
    copied = loaded.copy()
    assert copied.description["type"] == "IVF,SQ8" and copied.size == 600
    for row in (0, 99, 599):
        assert copied.search(data[row], 1)[1].tolist() == [ids[row]]
    np.testing.assert_allclose(
        copied.similarity(data[3], ids[:50]), data[:50] @ data[3], atol=SQ8_TOLERANCE
    )
    copied.remove([int(ids[0])])
    assert copied.size == 599 and int(ids[0]) not in copied.search(data[0], 5)[1].tolist()
