"""The eval metrics on constructed cases whose answers are known by hand."""

import math

import numpy as np
import pytest

from meqg_mlx.eval.metrics import (
    Interval,
    brier,
    cascade_fail,
    fit_temperature,
    mean_interval,
    reliability,
    softmax_confidence,
    verdict,
)


def test_a_model_that_copies_the_truth_never_cascades_and_a_constant_one_always_does():
    lengths = np.array([3, 5, 2, 4])
    assert cascade_fail(np.ones((4, 5), bool), lengths).tolist() == [0, 0, 0, 0, 0]
    assert cascade_fail(np.zeros((4, 5), bool), lengths).tolist() == [1, 1, 1, 1, 1]


def test_cascade_fail_counts_the_first_wrong_step_and_only_chains_that_reach_the_horizon():
    correct = np.array(
        [
            [True, True, False, True],  # fails at step 3
            [True, False, True, True],  # fails at step 2
            [True, True, True, True],  # never fails, but only 2 steps long
        ]
    )
    rates = cascade_fail(correct, np.array([4, 4, 2]))
    assert rates[:2].tolist() == [0.0, 1 / 3] and rates[2:].tolist() == [1.0, 1.0]  # chain 3 stops counting at 2
    assert math.isnan(cascade_fail(correct, np.array([1, 1, 1]))[3])


def test_ece_and_brier_of_a_known_miscalibrated_predictor():
    confidence = np.full(1000, 0.9)
    correct = np.arange(1000) < 600  # 60% right at 90% confidence
    diagram = reliability(confidence, correct)
    assert diagram.ece == pytest.approx(0.3) and diagram.count.sum() == 1000 and diagram.count[13] == 1000
    assert brier(confidence, correct) == pytest.approx(0.6 * 0.01 + 0.4 * 0.81)


def test_a_confident_copy_of_the_truth_is_calibrated():
    assert reliability(np.ones(50), np.ones(50, bool)).ece == 0.0 and brier(np.ones(50), np.ones(50)) == 0.0
    edges = reliability(np.array([0.0, 1.0, 0.5]), np.array([0, 1, 1])).count
    assert edges[0] == 1 and edges[-1] == 1 and edges.sum() == 3
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        reliability(np.array([1.5]), np.array([1]))


def test_the_fitted_temperature_recovers_the_one_that_made_the_data():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(4000, 8))
    logits = scores / 0.25
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    truth = np.array([rng.choice(8, p=row) for row in p])
    temperature = fit_temperature(scores, truth)
    assert temperature == pytest.approx(0.25, rel=0.1)
    confidence = softmax_confidence(scores, temperature)
    assert reliability(confidence, truth == scores.argmax(1)).ece < 0.03


def test_intervals_and_verdicts():
    interval = mean_interval([0.1, 0.2, 0.3])
    assert interval.mean == pytest.approx(0.2) and interval.n == 3
    assert interval.high - interval.mean == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)  # t(0.975, 2)
    assert verdict(Interval(0.2, 0.15, 0.25, 3), 0.10, higher_is_better=True) == "met"
    assert verdict(Interval(0.05, 0.01, 0.08, 3), 0.10, higher_is_better=True) == "not met"
    assert verdict(Interval(0.1, 0.05, 0.15, 3), 0.10, higher_is_better=True) == "inconclusive"
    assert verdict(Interval(0.03, 0.02, 0.04, 3), 0.05, higher_is_better=False) == "met"  # ECE <= 0.05
    assert verdict(Interval(0.08, 0.06, 0.10, 3), 0.05, higher_is_better=False) == "not met"
    assert verdict(mean_interval([0.5]), 0.1, higher_is_better=True) == "inconclusive"  # one seed: no width
