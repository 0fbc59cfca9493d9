"""The metrics, checked against small cases computed by hand."""

from __future__ import annotations

import pytest

from eval.metrics import (
    Judgement,
    ReliabilityBin,
    contains_answer,
    exact_match,
    expected_calibration_error,
    f1_score,
    mean_reciprocal_rank,
    normalize_answer,
    percentile,
    recall_at_k,
    reliability,
    summarise,
)


def judgement(
    answerable: bool = True,
    gold_rank: int | None = 1,
    correct: tuple[bool, ...] = (True,),
    em: float = 0.0,
    f1: float = 0.0,
    citations_ok: int = 1,
    citations: int = 1,
    latency_ms: float = 10.0,
) -> Judgement:
    return Judgement(answerable, gold_rank, correct, em, f1, citations_ok, citations, latency_ms)


def test_normalize_answer_follows_squad_and_handles_typographic_punctuation() -> None:
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert (
        normalize_answer("Zelensky\u2019s \u201cvictory plan\u201d \u2013 an idea")
        == "zelenskys victory plan idea"
    )
    assert normalize_answer("a") == ""


def test_contains_answer_matches_whole_words_after_normalisation() -> None:
    assert contains_answer("He met the EU's 27 leaders.", ["27"])
    assert contains_answer("within three months.", ["Three Months"])
    assert not contains_answer("It happened in 2027.", ["27"])
    assert not contains_answer("Tesla was the fourth of five children.", ["four"])
    assert not contains_answer("anything", [])
    assert not contains_answer("the answer", ["the"])  # normalises to nothing


def test_exact_match_and_f1_by_hand() -> None:
    assert exact_match("the Denver Broncos", ["Denver Broncos", "Broncos"]) == 1.0
    assert exact_match("Denver", ["Denver Broncos"]) == 0.0
    # prediction tokens {denver, broncos, won}, gold {denver, broncos}: P 2/3, R 1 -> F1 0.8
    assert f1_score("Denver Broncos won", ["Denver Broncos"]) == pytest.approx(0.8)
    # the best gold answer counts: against "Broncos" P 1/3, R 1 -> 0.5 < 0.8
    assert f1_score("Denver Broncos won", ["Broncos", "Denver Broncos"]) == pytest.approx(0.8)
    assert f1_score("nothing shared", ["Denver"]) == 0.0


def test_recall_and_mrr_by_hand() -> None:
    ranks = [1, 3, None, 10]
    assert recall_at_k(ranks, 1) == 0.25
    assert recall_at_k(ranks, 5) == 0.5
    assert recall_at_k(ranks, 10) == 0.75
    assert mean_reciprocal_rank(ranks) == pytest.approx((1 + 1 / 3 + 0 + 1 / 10) / 4)
    assert recall_at_k([], 1) is None
    assert mean_reciprocal_rank([]) is None


def test_percentile_interpolates_linearly() -> None:
    values = [40.0, 10.0, 30.0, 20.0]
    assert percentile(values, 50) == 25.0
    assert percentile(values, 95) == pytest.approx(38.5)  # 30 + 0.85 * (40 - 30)
    assert percentile([], 50) is None


def test_summarise_by_hand() -> None:
    results = [
        judgement(gold_rank=1, correct=(True, False), em=1.0, f1=1.0, latency_ms=10),
        judgement(gold_rank=2, correct=(False, True), f1=0.5, citations=2, latency_ms=20),
        judgement(gold_rank=None, correct=(), citations_ok=0, citations=0, latency_ms=30),
        judgement(answerable=False, gold_rank=None, correct=(), citations=0, citations_ok=0),
        judgement(answerable=False, gold_rank=None, correct=(False,), latency_ms=40),
    ]
    m = summarise(results)
    assert (m.questions, m.answerable, m.unanswerable) == (5, 3, 2)
    assert m.recall == {1: pytest.approx(1 / 3), 5: pytest.approx(2 / 3), 10: pytest.approx(2 / 3)}
    assert m.mrr == pytest.approx((1 + 0.5 + 0) / 3)
    assert m.accuracy == pytest.approx(1 / 3)
    assert m.top3_accuracy == pytest.approx(2 / 3)
    assert m.exact_match == pytest.approx(1 / 3)
    assert m.f1 == pytest.approx(0.5)
    # abstained on questions 3 (answerable) and 4 (unanswerable)
    assert m.abstention_precision == 0.5
    assert m.abstention_recall == 0.5
    assert m.false_abstention == pytest.approx(1 / 3)
    # answers 1 + 2 + 0 + 0 + 1 = 4, of which question 2 had one with wrong offsets
    assert m.citation == pytest.approx(3 / 4)
    assert m.latency_p50_ms == 20.0


def test_each_wrong_top_answer_has_one_kind_of_miss() -> None:
    results = [
        judgement(gold_rank=1, correct=(True,)),  # right
        judgement(gold_rank=1, correct=(False, True)),  # the reader's miss
        judgement(gold_rank=3, correct=(False,)),  # another passage's answer won
        judgement(gold_rank=None, correct=(False,)),  # retrieval's miss
        judgement(gold_rank=2, correct=()),  # refused
        judgement(gold_rank=None, correct=()),  # refused, whatever was retrieved
        judgement(answerable=False, gold_rank=None, correct=(False,)),  # not a miss here
        judgement(answerable=False, gold_rank=None, correct=()),
    ]
    assert [j.miss for j in results] == [
        None,
        "gold passage first",
        "gold passage lower",
        "gold passage not returned",
        "refused",
        "refused",
        None,
        None,
    ]
    m = summarise(results)
    assert m.misses == {
        "refused": pytest.approx(2 / 6),
        "gold passage first": pytest.approx(1 / 6),
        "gold passage lower": pytest.approx(1 / 6),
        "gold passage not returned": pytest.approx(1 / 6),
    }
    assert m.accuracy is not None and m.accuracy + sum(m.misses.values()) == pytest.approx(1.0)
    assert summarise([judgement(answerable=False, gold_rank=None, correct=())]).misses is None


def test_summarise_without_unanswerable_questions_leaves_abstention_precision_out() -> None:
    m = summarise([judgement(correct=()), judgement()])
    assert m.abstention_precision is None
    assert m.abstention_recall is None
    assert m.false_abstention == 0.5
    assert m.citation == pytest.approx(2 / 2)


def test_citation_failures_count() -> None:
    assert summarise([judgement(citations_ok=1, citations=2)]).citation == 0.5


def test_reliability_bins_and_calibration_error_by_hand() -> None:
    bins = reliability([0.05, 0.15, 0.95, 1.0], [False, True, True, True], bins=2)
    assert [b.count for b in bins] == [2, 2]
    assert bins[0].mean_score == pytest.approx(0.1)
    assert bins[0].accuracy == 0.5
    assert bins[1].mean_score == pytest.approx(0.975)
    assert bins[1].accuracy == 1.0
    # (2 * |0.1 - 0.5| + 2 * |0.975 - 1.0|) / 4
    assert expected_calibration_error(bins) == pytest.approx((0.8 + 0.05) / 4)
    assert expected_calibration_error([ReliabilityBin(0, 1, 0, None, None)]) is None
