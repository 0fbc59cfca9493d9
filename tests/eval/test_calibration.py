"""Fitting the score calibration and choosing the abstention threshold."""

from __future__ import annotations

import numpy as np
import pytest

from eval.calibration import (
    Candidates,
    choose_threshold,
    fit,
    fit_logistic,
    top_per_question,
    trade_off,
)

FEATURES = ("a", "b", "c", "d")
"""Feature names of the synthetic candidates (the fit takes whatever names it is given)."""


def test_logistic_fit_recovers_known_weights() -> None:
    rng = np.random.default_rng(0)
    features = rng.uniform(-1, 1, size=(20_000, 2))
    probability = 1 / (1 + np.exp(-(-0.5 + 2.0 * features[:, 0] - 1.0 * features[:, 1])))
    labels = rng.uniform(size=len(features)) < probability
    bias, weights = fit_logistic(features, labels, l2=0.0)
    assert bias == pytest.approx(-0.5, abs=0.1)
    assert weights == pytest.approx([2.0, -1.0], abs=0.1)


def test_trade_off_by_hand() -> None:
    best = np.array([0.9, 0.6, 0.2, 0.1, 0.7])
    answerable = np.array([True, True, True, False, False])
    point = trade_off(best, answerable, 0.5)
    # abstains on 0.2 (answerable) and 0.1 (unanswerable)
    assert point.abstention_precision == 0.5
    assert point.abstention_recall == 0.5
    assert point.false_abstention == pytest.approx(1 / 3)


def test_threshold_abstains_most_within_the_false_abstention_budget() -> None:
    best = np.array([0.9, 0.8, 0.6, 0.5, 0.3, 0.2, 0.7])
    answerable = np.array([True, True, True, True, False, False, False])
    chosen = choose_threshold(best, answerable, max_false_abstention=0.0)
    # every threshold in (0.3, 0.5] abstains on 0.3 and 0.2 and on no answerable question;
    # the middle of that range is taken
    assert chosen.threshold == pytest.approx(0.4)
    assert chosen.abstention_recall == pytest.approx(2 / 3)
    assert chosen.false_abstention == 0.0
    # a looser budget buys nothing here (0.7 sits above two answerable questions), so
    # the threshold that abstains on fewer answerable questions wins
    assert choose_threshold(best, answerable, max_false_abstention=0.25) == chosen
    # with half the answerable questions allowed, all unanswerable ones are caught
    loosest = choose_threshold(best, answerable, max_false_abstention=0.5)
    assert loosest.abstention_recall == 1.0
    assert loosest.false_abstention == 0.5
    assert loosest.threshold == pytest.approx(0.75)


def test_fit_takes_the_threshold_from_the_set_with_unanswerable_questions() -> None:
    rng = np.random.default_rng(1)
    features = rng.uniform(size=(400, 4))
    labels = features[:, 0] > 0.7
    owners = np.arange(400) // 4
    answerable = np.ones(100, dtype=bool)
    answerable[::5] = False
    labels &= answerable[owners]
    fitted = fit(
        [("ours", Candidates(FEATURES, features, labels, owners, answerable))],
        max_false_abstention=0.05,
    )
    assert fitted.calibration.features == FEATURES
    assert fitted.calibration.weights["a"] > 0
    assert (fitted.chosen.false_abstention or 0) <= 0.05
    assert fitted.provenance["fitted_on"] == {
        "ours": {
            "questions": 100,
            "unanswerable": 20,
            "candidates": 400,
            "positives": int(labels.sum()),
        }
    }


def test_top_per_question_keeps_the_best_rows_of_each_question() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.3, 0.8, 0.2])
    question = np.array([0, 0, 0, 1, 1, 1])
    kept = top_per_question(scores, question, 2)
    assert kept.tolist() == [False, True, True, True, True, False]


def test_platt_rescaling_keeps_the_ranking() -> None:
    rng = np.random.default_rng(2)
    features = rng.uniform(size=(600, 4))
    owners = np.arange(600) // 6
    labels = features[:, 0] + 0.3 * rng.uniform(size=600) > 0.9
    answerable = np.ones(100, dtype=bool)
    fitted = fit([("set", Candidates(FEATURES, features, labels, owners, answerable))], 0.05)
    _, raw_weights = fit_logistic(features, labels)
    rescaled = np.array([fitted.calibration.weights[n] for n in FEATURES])
    ratio = rescaled / raw_weights
    assert ratio == pytest.approx(np.full(4, ratio[0]))  # one positive factor: same order
    assert ratio[0] > 0
