"""Validation metrics for next-concept prediction (docs/design.md, Validation tables).

A query is a context (the concepts seen, the current one last), the true next concept and
the other true answers (a source with several targets along one relation). Every method
is scored against the same candidates: all store concepts except the query's context and
its other answers (filtered ranking, as in link prediction). Reported per method:
recall@k and MRR among those candidates; l2, the mean squared distance to the truth;
contrastive accuracy (LCM's: the share of the other queries' targets farther from the
prediction than its own, 0.5 is chance); PAR (LCM's paraphrase ratio: how much more the
prediction resembles its context than the truth does, as the ratio of the mean largest cosines to
the context, which stays defined where a truth's is near 0; above 1 it copies); and the copy
rate, the share of predictions whose nearest concept, context included, is a context concept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK = 512  # queries scored at once: 512 x 117k candidates is 240 MB of float32 scores


@dataclass
class Queries:
    """Table rows: `context` (N, S) the rows seen, -1 padded, the current concept last among them;
    `target` (N,) the true next row; `other_answers` (N, A) rows that are right too, -1 padded."""

    context: np.ndarray
    target: np.ndarray
    other_answers: np.ndarray

    def __post_init__(self):
        if not len(self.target) or (self.context[:, 0] < 0).any():
            raise ValueError("every query needs a target and at least one concept of context")

    def __len__(self) -> int:
        return len(self.target)

    @property
    def current(self) -> np.ndarray:
        """(N,) the last row of each context."""
        last = (self.context >= 0).sum(1) - 1
        return self.context[np.arange(len(self)), last]


@dataclass
class Scored:
    """One method on one query set: the table's numbers and the per-query outcomes behind them."""

    metrics: dict[str, float]
    hit_at_1: np.ndarray
    reciprocal_rank: np.ndarray


def score(predicted: np.ndarray, queries: Queries, candidates: np.ndarray, ks: tuple[int, ...] = (1, 10)) -> Scored:
    """`predicted` (N, d) unit rows against `candidates` (M, d), the table's unit rows."""
    predicted = np.asarray(predicted, np.float32)
    truth = candidates[queries.target]
    ranks, copies = np.empty(len(queries)), np.empty(len(queries), bool)
    resemblance = np.empty((2, len(queries)))  # max cosine to the context: of the prediction, of the truth
    for start in range(0, len(queries), CHUNK):
        part = slice(start, start + CHUNK)
        scores = predicted[part] @ candidates.T
        rows = np.arange(scores.shape[0])[:, None]
        context = queries.context[part]
        copies[part] = (scores.argmax(1)[:, None] == context).any(1)
        seen = np.where(context >= 0, np.take_along_axis(scores, np.maximum(context, 0), 1), -np.inf)
        truth_seen = np.einsum("nd,nsd->ns", truth[part], candidates[np.maximum(context, 0)])
        truth_seen = np.where(context >= 0, truth_seen, -np.inf)
        resemblance[:, part] = seen.max(1), truth_seen.max(1)
        own = scores[rows[:, 0], queries.target[part]]
        for excluded in (context, queries.other_answers[part]):
            scores[np.broadcast_to(rows, excluded.shape)[excluded >= 0], excluded[excluded >= 0]] = -np.inf
        ranks[part] = (scores > own[:, None]).sum(1) + 1
    metrics = {f"recall@{k}": float((ranks <= k).mean()) for k in ks}
    metrics |= {
        "mrr": float((1 / ranks).mean()),
        "l2": float(((predicted - truth) ** 2).sum(-1).mean()),
        "contrastive_accuracy": contrastive_accuracy(predicted, truth, queries.target),
        "par": float(resemblance[0].mean() / max(resemblance[1].mean(), 1e-6)),
        "copy_rate": float(copies.mean()),
    }
    return Scored(metrics, (ranks <= 1).astype(np.float64), 1 / ranks)


def contrastive_accuracy(predicted: np.ndarray, truth: np.ndarray, target: np.ndarray) -> float:
    """Per prediction, the share of the other queries' (distinct) targets farther from it than its own."""
    shares = []
    for start in range(0, len(predicted), CHUNK):
        similarity = predicted[start : start + CHUNK] @ truth.T
        own = np.einsum("nd,nd->n", predicted[start : start + CHUNK], truth[start : start + CHUNK])
        other = target[None, :] != target[start : start + CHUNK, None]
        shares.append(((similarity < own[:, None]) & other).sum(1) / np.maximum(other.sum(1), 1))
    return float(np.concatenate(shares).mean())


def paired_difference(
    first: np.ndarray, second: np.ndarray, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """mean(first - second) over the same queries, and its paired bootstrap 95% interval."""
    difference = np.asarray(first, np.float64) - np.asarray(second, np.float64)
    draws = np.random.default_rng(seed).integers(0, len(difference), (resamples, len(difference)))
    means = difference[draws].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(difference.mean()), float(low), float(high)
