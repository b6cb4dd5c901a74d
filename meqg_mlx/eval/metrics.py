"""The numbers `meqg eval` reports, on plain arrays: cascade failure, calibration, intervals, verdicts.

Nothing here knows about models or stores, so each metric is checked on constructed
cases with known answers (tests/eval/test_metrics.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ECE_BINS = 15
TEMPERATURE_BOUND = 1e3  # the fit's grid ends here: a temperature this high means a uniform confidence


def cascade_fail(correct: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Share of chains with a wrong step among their first h steps, for h = 1..H.

    `correct` is (chains, H) booleans of free-running steps; `lengths[i]` how many steps
    chain i has (the rest of its row is ignored). Horizon h counts only chains with at
    least h steps; a horizon no chain reaches is NaN.
    """
    correct = np.asarray(correct, dtype=bool)
    lengths = np.asarray(lengths)
    horizons = np.arange(1, correct.shape[1] + 1)
    valid = horizons[None, :] <= lengths[:, None]
    intact = np.cumprod(np.where(valid, correct, True), axis=1).astype(bool)
    reached = valid.sum(axis=0)
    failed = (valid & ~intact).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(reached > 0, failed / np.maximum(reached, 1), np.nan)


@dataclass
class Reliability:
    """Per confidence bin: mean confidence, accuracy, count (bins with no prediction are NaN, 0)."""

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean |accuracy - confidence| over bins."""
        used = self.count > 0
        total = self.count.sum()
        if total == 0:
            return math.nan
        gaps = np.abs(self.accuracy[used] - self.confidence[used])
        return float((gaps * self.count[used]).sum() / total)


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """Equal-width bins on [0, 1]; a confidence of exactly 1 falls in the last bin."""
    confidence = np.asarray(confidence, dtype=np.float64).reshape(-1)
    correct = np.asarray(correct, dtype=np.float64).reshape(-1)
    if confidence.shape != correct.shape:
        raise ValueError(f"{confidence.size} confidences for {correct.size} outcomes")
    if confidence.size and (confidence.min() < 0 or confidence.max() > 1 or not np.isfinite(confidence).all()):
        raise ValueError("confidences must be finite and in [0, 1]")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, confidence, bins) / count
        accuracy = np.bincount(which, correct, bins) / count
    return Reliability(edges, mean_confidence, accuracy, count)


def brier(confidence: np.ndarray, correct: np.ndarray) -> float:
    confidence, correct = np.asarray(confidence, np.float64), np.asarray(correct, np.float64)
    return float(np.mean((confidence - correct) ** 2)) if confidence.size else math.nan


def softmax_confidence(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Confidence of the top candidate under softmax(scores / T), rows being candidates' scores."""
    scaled = np.asarray(scores, np.float64) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    probabilities = np.exp(scaled)
    return probabilities.max(axis=-1) / probabilities.sum(axis=-1)


def fit_temperature(scores: np.ndarray, truth: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of the true candidate (index `truth`)
    under softmax(scores / T): a log-spaced grid, then a finer one around its best point."""
    scores, truth = np.asarray(scores, np.float64), np.asarray(truth)
    if scores.size == 0:
        raise ValueError("no validation scores to fit a temperature on")

    finite = np.isfinite(scores[np.arange(len(truth)), truth])
    scores, truth = scores[finite], truth[finite]  # a truth with no score (-inf) carries no information
    if len(truth) == 0:
        raise ValueError("no validation step has a scored truth to fit a temperature on")

    def nll(temperature: float) -> float:
        scaled = scores / temperature
        scaled -= scaled.max(axis=-1, keepdims=True)
        log_z = np.log(np.exp(scaled).sum(axis=-1))
        return float(np.mean(log_z - scaled[np.arange(len(truth)), truth]))

    grid = np.logspace(
        -4, np.log10(TEMPERATURE_BOUND), 85
    )  # up to near-uniform over the candidates: cosines span at most 2
    best = grid[np.argmin([nll(t) for t in grid])]
    fine = np.linspace(best / 1.25, min(best * 1.25, TEMPERATURE_BOUND), 41)
    return float(fine[np.argmin([nll(t) for t in fine])])


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4f} [{self.low:.4f}, {self.high:.4f}] (n={self.n})"


def mean_interval(values, level: float = 0.95) -> Interval:
    """The mean with a Student-t interval over independent runs (seeds); one run has no width (NaN)."""
    from scipy import stats

    values = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
    if values.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(values.mean())
    if values.size == 1:
        return Interval(mean, math.nan, math.nan, 1)
    half = float(stats.t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return Interval(mean, mean - half, mean + half, int(values.size))


def verdict(interval: Interval, threshold: float, higher_is_better: bool) -> str:
    """met / not met / inconclusive (the interval straddles the threshold, or it has no width)."""
    if not math.isfinite(interval.low) or not math.isfinite(interval.high):
        return "inconclusive"
    low, high = (interval.low, interval.high) if higher_is_better else (-interval.high, -interval.low)
    bar = threshold if higher_is_better else -threshold
    if low >= bar:
        return "met"
    if high < bar:
        return "not met"
    return "inconclusive"
