"""BM25 over segments: Lucene's scores (bm25s as the reference), statistics over the live
documents of all segments, and rankings that do not change when segments merge."""

from __future__ import annotations

import random

import bm25s
import numpy as np
import pytest

from index.lexical import BM25_B, BM25_K1, MAX_TERM_COUNT, LexicalSegment, tokenize
from index.segments import BaseSegment, Delta, SegmentView

WORDS = [
    "harbour",
    "port",
    "ship",
    "ferry",
    "minister",
    "aid",
    "euros",
    "billion",
    "talks",
    "summit",
    "storm",
    "flood",
    "river",
    "bridge",
    "council",
    "vote",
    "budget",
    "school",
    "hospital",
    "strike",
    "union",
    "wage",
    "price",
    "market",
    "bank",
    "rate",
]
QUERIES = ["aid euros billion", "harbour ferry storm", "union strike wage", "bank rate rate"]


def corpus(size: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(3, 30))) + "." for _ in range(size)]


def view_of(
    base_texts: list[str],
    delta_texts: list[str],
    deleted: list[int] = (),  # type: ignore[assignment]
) -> SegmentView:
    """A view with rows 1.. in a base segment and the rest in a delta (random vectors)."""
    rng = np.random.default_rng(0)
    base_rowids = list(range(1, len(base_texts) + 1))
    delta_rowids = list(range(len(base_texts) + 1, len(base_texts) + len(delta_texts) + 1))
    empty = BaseSegment.empty(4)
    lexical = LexicalSegment.build(base_rowids, base_texts)
    vectors = empty.vectors
    vectors.add(
        rng.standard_normal((len(base_texts), 4)).astype(np.float32), np.asarray(base_rowids)
    )
    base = BaseSegment("base", 1, vectors, lexical, int(np.asarray(lexical.lengths).sum()))
    delta = Delta(4)
    if delta_texts:
        delta.append(
            delta_rowids, rng.standard_normal((len(delta_texts), 4)).astype(np.float32), delta_texts
        )
    return SegmentView.of(2, base, delta, np.asarray(deleted, dtype=np.int64))


def test_a_single_segment_scores_as_bm25s_does() -> None:
    texts = corpus(300)
    reference = bm25s.BM25(k1=BM25_K1, b=BM25_B, method="lucene")
    reference.index(tokenize(texts), show_progress=False)
    segment = LexicalSegment.build(range(len(texts)), texts)
    for query in QUERIES:
        rowids, scores = segment.scores(query)
        expected = reference.get_scores(
            [t for t in tokenize([query])[0] if t in reference.vocab_dict]
        )
        assert np.allclose(expected[rowids], scores, rtol=1e-5)
        assert np.count_nonzero(expected) == len(rowids)


@pytest.mark.parametrize("split", [0, 1, 150, 299, 300])
def test_scores_do_not_depend_on_how_documents_fall_into_segments(split: int) -> None:
    texts = corpus(300)
    whole = view_of(texts, [])
    parted = view_of(texts[:split], texts[split:])
    for query in QUERIES:
        expected_rowids, expected = whole.lexical_scores(query)
        rowids, scores = parted.lexical_scores(query)
        assert np.array_equal(rowids, expected_rowids)
        assert np.allclose(scores, expected, rtol=1e-5)


def test_deleted_documents_leave_the_statistics_too() -> None:
    texts = corpus(200)
    gone = sorted(random.Random(3).sample(range(1, 201), 60))
    with_deletions = view_of(texts[:120], texts[120:], gone)
    survivors = [t for n, t in enumerate(texts, start=1) if n not in gone]
    rebuilt = LexicalSegment.build([n for n in range(1, 201) if n not in gone], survivors)
    for query in QUERIES:
        rowids, scores = with_deletions.lexical_scores(query)
        expected_rowids, expected = rebuilt.scores(query)
        assert np.array_equal(rowids, expected_rowids)
        assert np.allclose(scores, expected, rtol=1e-5)


def test_a_merge_changes_no_score() -> None:
    texts = corpus(250)
    gone = [3, 4, 130, 131, 249]
    view = view_of(texts[:100], texts[100:], gone)
    merged = view.merged("merged")
    after = SegmentView.of(view.seq, merged, Delta(4), np.zeros(0, np.int64))
    assert merged.size == 250 - len(gone)
    assert np.array_equal(after.live_rowids(), view.live_rowids())
    query_vector = np.asarray([0.5, -0.1, 0.3, 0.8], dtype=np.float32)
    before_scores, before_ids = view.dense_search(query_vector, 20)
    after_scores, after_ids = after.dense_search(query_vector, 20)
    assert before_ids.tolist() == after_ids.tolist()
    assert np.allclose(before_scores, after_scores, rtol=1e-5)
    for query in QUERIES:
        before_rowids, before = view.lexical_scores(query)
        after_rowids, scores = after.lexical_scores(query)
        assert np.array_equal(before_rowids, after_rowids)
        assert np.allclose(before, scores, rtol=1e-6)


def test_term_counts_are_kept_in_a_byte_and_capped_alike_in_every_segment() -> None:
    flood = " ".join(["flood"] * 300) + " river."
    texts = corpus(30)
    view = view_of([*texts[:20], flood], [flood, *texts[20:]])
    assert view.base.lexical.counts.dtype == np.uint8
    assert int(view.base.lexical.counts.max()) == MAX_TERM_COUNT
    rowids, scores = view.lexical_scores("flood")
    by_rowid = dict(zip(rowids.tolist(), scores.tolist(), strict=True))
    assert by_rowid[21] == pytest.approx(by_rowid[22])  # the same text in base and delta
    merged = SegmentView.of(view.seq, view.merged("m"), Delta(4), np.zeros(0, np.int64))
    after_rowids, after = merged.lexical_scores("flood")
    assert np.array_equal(rowids, after_rowids) and np.allclose(scores, after, rtol=1e-6)


def test_filters_and_empty_queries() -> None:
    view = view_of(corpus(50), corpus(20, seed=9))
    rowids, _ = view.lexical_scores("aid euros", allowed={1, 2, 3, 60})
    assert set(rowids.tolist()) <= {1, 2, 3, 60}
    assert len(view.lexical_scores("the of and")[0]) == 0  # stop words only
    assert len(view.lexical_scores("zeppelin")[0]) == 0


def test_a_saved_segment_loads_memory_mapped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    texts = corpus(40)
    segment = LexicalSegment.build(range(10, 50), texts)
    segment.save(tmp_path / "lexical")
    loaded = LexicalSegment.load(tmp_path / "lexical")
    for query in QUERIES:
        assert all(
            np.array_equal(a, b)
            for a, b in zip(segment.scores(query), loaded.scores(query), strict=True)
        )
    (tmp_path / "lexical" / "indptr.npy").write_bytes(b"broken")
    with pytest.raises(ValueError, match=r"indptr\.npy"):
        LexicalSegment.load(tmp_path / "lexical")


def test_a_view_advanced_change_by_change_is_the_view_built_from_scratch() -> None:
    rng = random.Random(5)
    texts = corpus(600)  # row id r holds texts[r - 1]
    view = view_of(texts[:150], [])
    next_row, deleted = 151, []
    query_vector = np.asarray([0.5, -0.1, 0.3, 0.8], dtype=np.float32)
    for step in range(30):
        rows = list(range(next_row, next_row + rng.randint(0, 12)))
        next_row += len(rows)
        if rows:
            vectors = np.random.default_rng(step).standard_normal((len(rows), 4))
            view.delta.append(rows, vectors.astype(np.float32), texts[rows[0] - 1 : rows[-1]])
        live = sorted(set(range(1, next_row)) - set(deleted))
        gone = rng.sample(live, min(len(live), rng.choice([0, 0, 1, 5])))
        again = deleted[:1]  # deleting a row twice changes nothing
        deleted += gone
        view = view.advanced(view.seq + 1, np.asarray(gone + gone[:1] + again, dtype=np.int64))
        scratch = SegmentView.of(view.seq, view.base, view.delta, np.asarray(deleted, np.int64))
        assert view.deleted.tolist() == scratch.deleted.tolist()
        assert view.delta_size == scratch.delta_size
        assert view.delta_live.tolist() == scratch.delta_live.tolist()
        assert (view.statistics, view.total_length) == (scratch.statistics, scratch.total_length)
        assert np.array_equal(view.live_rowids(), scratch.live_rowids())
        for query in QUERIES:
            rowids, scores = view.lexical_scores(query)
            expected_rowids, expected = scratch.lexical_scores(query)
            assert np.array_equal(rowids, expected_rowids) and np.allclose(scores, expected)
        scores, rowids = view.dense_search(query_vector, 20)
        expected, expected_rowids = scratch.dense_search(query_vector, 20)
        assert rowids.tolist() == expected_rowids.tolist() and np.allclose(scores, expected)
    assert len(deleted) > 20 and view.delta_size > 100
