"""Multi-step tasks: chains of concepts a model must follow, rolled out free-running and teacher-forced.

A chain is concept vectors in order. Given its first `prefix` concepts, a free-running
rollout feeds the model its own previous predictions; a teacher-forced one feeds the
truth. A step is right when the true next concept is the nearest candidate to the
prediction (also reported within the top 5), the candidates being the store's
concepts plus any chain text the store lacks, minus those already in the context.
Confidence is the top candidate's softmax probability over the candidates' cosines,
at a temperature fitted on a calibration split (`metrics.fit_temperature`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# (N, t, d) contexts and (N, t) the relation followed from each position -> (N, d) next-concept vectors
Predict = Callable[[np.ndarray, np.ndarray], np.ndarray]
TOP_K = 5
CANDIDATES_SCORED = 32  # the softmax for confidence runs over this many best candidates


@dataclass
class Chain:
    name: str
    rows: np.ndarray  # candidate rows of its concepts, in order
    relations: np.ndarray | None = None  # the relation id each step follows (len(rows) - 1); None: next

    def __post_init__(self):
        if self.relations is None:
            self.relations = np.zeros(max(len(self.rows) - 1, 0), np.int64)
        if len(self.relations) != max(len(self.rows) - 1, 0):
            raise ValueError(f"chain {self.name}: {len(self.rows)} concepts need {len(self.rows) - 1} relations")

    def bucket(self, salt: str = "") -> float:
        """A number in [0, 1] from the name alone: stable across runs, variants and machines. Choices
        that must not correlate (which chains to keep, which to calibrate on) use different salts."""
        return int(hashlib.sha1((salt + self.name).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


@dataclass
class Candidates:
    """Unit vectors a prediction is decoded against, with the text of each row."""

    vectors: np.ndarray
    texts: list[str]

    def __post_init__(self):
        if len(self.vectors) != len(self.texts):
            raise ValueError(f"{len(self.vectors)} candidate vectors for {len(self.texts)} texts")


@dataclass
class Rollout:
    """Per chain and step (chains x horizon; steps past a chain's length are False / NaN)."""

    correct: np.ndarray  # the true next concept is the nearest candidate
    in_top_k: np.ndarray  # ... among the TOP_K nearest
    scores: np.ndarray  # (chains, horizon, CANDIDATES_SCORED) best cosines, descending
    truth_rank: np.ndarray  # index of the truth among `scores`' columns, -1 when not among them
    truth_score: np.ndarray  # the truth's cosine (-inf when it was already in the context)
    lengths: np.ndarray  # steps per chain

    def confidence(self, temperature: float) -> np.ndarray:
        from .metrics import softmax_confidence

        return softmax_confidence(np.nan_to_num(self.scores, nan=-1.0), temperature)

    def valid(self) -> np.ndarray:
        return np.arange(self.correct.shape[1])[None, :] < self.lengths[:, None]

    def calibration_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """(scores, truth index) per valid step, for `fit_temperature`: the best cosines plus one column
        holding the truth's cosine when it is not among them (-inf, weightless, when it is)."""
        valid = self.valid()
        ranks, truth = self.truth_rank[valid], self.truth_score[valid]
        extra = np.where(ranks < 0, truth, -np.inf)
        scores = np.concatenate([np.nan_to_num(self.scores[valid], nan=-np.inf), extra[:, None]], axis=1)
        return scores, np.where(ranks < 0, scores.shape[1] - 1, ranks)


def rollout(
    predict: Predict,
    candidates: Candidates,
    chains: list[Chain],
    prefix: int,
    teacher_forced: bool,
    snap: bool = False,
) -> Rollout:
    """Each chain's steps after its first `prefix` concepts, all chains at once. Free-running, each step
    is fed the predicted vector, or with `snap` the candidate it decodes to (as text would be)."""
    if prefix < 1:
        raise ValueError("a rollout needs at least one concept of context")
    usable = [c for c in chains if len(c.rows) > prefix]
    if not usable:
        raise ValueError(f"no chain is longer than its prefix of {prefix}")
    lengths = np.array([len(c.rows) - prefix for c in usable])
    horizon = int(lengths.max())
    width = min(CANDIDATES_SCORED, len(candidates.vectors))
    correct = np.zeros((len(usable), horizon), bool)
    in_top_k = np.zeros_like(correct)
    scores = np.full((len(usable), horizon, width), np.nan)
    truth_rank = np.full((len(usable), horizon), -1)
    truth_score = np.full((len(usable), horizon), -np.inf)
    truth = np.stack([np.pad(c.rows, (0, prefix + horizon - len(c.rows)), constant_values=-1) for c in usable])
    followed = np.stack([np.pad(c.relations, (0, prefix + horizon - 1 - len(c.relations))) for c in usable])
    context = candidates.vectors[truth[:, :prefix]]
    used = [set(row[:prefix].tolist()) for row in truth]
    for step in range(horizon):
        active = np.flatnonzero(lengths > step)
        predicted = np.asarray(predict(context[active], followed[active, : context.shape[1]]), np.float64)
        predicted /= np.maximum(np.linalg.norm(predicted, axis=1, keepdims=True), 1e-12)
        cosines = predicted @ candidates.vectors.T
        for position, chain in enumerate(active):
            cosines[position, list(used[chain])] = -np.inf
        order = best_first(cosines, width)
        target = truth[active, prefix + step]
        correct[active, step] = order[:, 0] == target
        in_top_k[active, step] = (order[:, :TOP_K] == target[:, None]).any(axis=1)
        scores[active, step] = np.take_along_axis(cosines, order, axis=1)
        truth_score[active, step] = cosines[np.arange(len(active)), target]
        hits = order == target[:, None]
        truth_rank[active, step] = np.where(hits.any(axis=1), hits.argmax(axis=1), -1)
        decoded = target if teacher_forced else order[:, 0]
        fed = candidates.vectors[decoded] if teacher_forced or snap else predicted
        grown = np.concatenate([context, np.zeros_like(context[:, :1])], axis=1)
        grown[active, -1] = fed
        context = grown
        for position, chain in enumerate(active):
            used[chain].add(int(decoded[position]))
    return Rollout(correct, in_top_k, scores, truth_rank, truth_score, lengths)


def best_first(scores: np.ndarray, width: int) -> np.ndarray:
    """Each row's `width` highest-scoring columns, best first: a partition, then a sort of those alone
    (0.16 s instead of a full sort's 0.61 s for 200 rows of 45k candidates)."""
    if width >= scores.shape[1]:
        return np.argsort(-scores, axis=1, kind="stable")
    top = np.argpartition(-scores, width - 1, axis=1)[:, :width]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable"), 1)


def calibration_split(chains: list[Chain], share: float = 0.5) -> tuple[list[Chain], list[Chain]]:
    """(calibration, test): by a hash of the chain's name, stable across runs and variants."""

    return [c for c in chains if c.bucket() < share], [c for c in chains if c.bucket() >= share]


def cut(name: str, rows: np.ndarray, length: int) -> list[Chain]:
    """Consecutive, non-overlapping chains of `length` concepts from one document (a shorter tail kept if >= 2)."""
    pieces = [rows[start : start + length] for start in range(0, len(rows), length)]
    return [Chain(f"{name}@{i}", piece) for i, piece in enumerate(pieces) if len(piece) >= 2]  # `next` throughout
