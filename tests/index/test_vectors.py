"""The vector index: exact below a size, IVF above it, and both behave the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from index import vectors as vectors_module
from index.vectors import VectorIndex

DIM = 16


def unit_vectors(count: int, seed: int = 0) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((count, DIM)).astype(np.float32)
    return data / np.linalg.norm(data, axis=1, keepdims=True)


@pytest.fixture
def small_threshold(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(vectors_module, "IVF_MIN_VECTORS", 400)
    return 400


def filled(count: int) -> tuple[VectorIndex, npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    data = unit_vectors(count)
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
    assert description["type"] == "IVF,Flat" and description["nprobe"] >= 1
    ivf.save(tmp_path / "v.faiss")
    loaded = VectorIndex.load(tmp_path / "v.faiss")
    for row in (0, 17, len(ids) - 1):
        _, found = loaded.search(data[row], 1)
        assert found.tolist() == [ids[row]]
    similarity = loaded.similarity(data[5], ids[[5, 6]])
    assert similarity[0] == pytest.approx(1.0, abs=1e-5)
    assert similarity[1] == pytest.approx(float(data[5] @ data[6]), abs=1e-5)


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
