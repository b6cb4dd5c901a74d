"""The baselines a concept model must beat, fitted on training pairs only (docs/design.md, Baselines).

Per relation, from the (source, target) pairs training may read: copy the current concept;
the context mean; a ridge map source -> target (closed form, its ridge picked on a tenth of
the pairs); kNN-successor, the targets of the most similar training sources (top-1, and
the similarity-weighted top-8); ridge + kNN-successor; and a two-layer MLP trained with
InfoNCE over store negatives for `train.baseline_mlp_steps` steps. They read only the current concept, as
the relation fixes what to predict; on documents (`next`) copy and mean read the context.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np

from ..kernels.activations import gelu
from .metrics import CHUNK, Queries

RIDGES = (1e-2, 1e-1, 1.0, 10.0, 100.0)  # times the number of pairs / dim: tried on a tenth of the pairs
NEIGHBOURS = 8
MLP_BATCH, MLP_NEGATIVES, MLP_HIDDEN = 256, 512, 512  # and train.baseline_mlp_steps steps: its compute budget
MLP_TEMPERATURE = 0.05


@dataclass
class Pairs:
    """Training pairs of one relation, as table rows."""

    source: np.ndarray
    target: np.ndarray


Predictor = Callable[[Queries], np.ndarray]  # queries -> (N, d) unit rows
Map = Callable[[np.ndarray], np.ndarray]  # (N, d) current concepts -> (N, d) unit rows


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def copy_last(vectors: np.ndarray) -> Predictor:
    return lambda queries: vectors[queries.current]


def context_mean(vectors: np.ndarray) -> Predictor:
    def predict(queries: Queries) -> np.ndarray:
        seen = queries.context >= 0
        return unit((vectors[np.maximum(queries.context, 0)] * seen[..., None]).sum(1))

    return predict


def fit_ridge(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) minimising |x W + b - y|^2 + lambda |W|^2, lambda chosen by cosine on a tenth of the pairs."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    check = np.random.default_rng(seed).random(len(x)) < 0.1
    if check.sum() < 2 or (~check).sum() < 2:
        check[:] = False
    scale = len(x) / x.shape[1]

    def solve(rows: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
        mean_x, mean_y = x[rows].mean(0), y[rows].mean(0)
        xc = x[rows] - mean_x
        weights = np.linalg.solve(xc.T @ xc + ridge * scale * np.eye(x.shape[1]), xc.T @ (y[rows] - mean_y))
        return weights, mean_y - mean_x @ weights

    best = RIDGES[len(RIDGES) // 2]
    if check.any():
        cosine = []
        for ridge in RIDGES:
            weights, bias = solve(~check, ridge)
            cosine.append((unit(x[check] @ weights + bias) * y[check]).sum(1).mean())
        best = RIDGES[int(np.argmax(cosine))]
    weights, bias = solve(np.ones(len(x), bool), best)
    return weights.astype(np.float32), bias.astype(np.float32)


def ridge(vectors: np.ndarray, pairs: Pairs) -> Map:
    weights, bias = fit_ridge(vectors[pairs.source], vectors[pairs.target])
    return lambda current: unit(current @ weights + bias)


def knn_successor(vectors: np.ndarray, pairs: Pairs, neighbours: int) -> Map:
    """The targets of the `neighbours` training sources most similar to the current concept, weighted by
    that similarity (one neighbour: its target)."""
    sources, targets = vectors[pairs.source], vectors[pairs.target]

    def predict(current: np.ndarray) -> np.ndarray:
        out = np.empty((len(current), vectors.shape[1]), np.float32)
        k = min(neighbours, len(pairs.source))
        for start in range(0, len(current), CHUNK):
            similarity = current[start : start + CHUNK] @ sources.T
            top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
            weights = np.maximum(np.take_along_axis(similarity, top, 1), 0.0) + 1e-6
            out[start : start + CHUNK] = unit(np.einsum("nk,nkd->nd", weights, targets[top]))
        return out

    return predict


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.up, self.down = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def __call__(self, x: mx.array) -> mx.array:
        out = x + self.down(gelu(self.up(x)))
        return out * mx.rsqrt(mx.square(out).sum(-1, keepdims=True) + 1e-12)


def infonce_mlp(vectors: np.ndarray, pairs: Pairs, steps: int, seed: int = 0) -> Map:
    """x + MLP(x), trained with InfoNCE: each pair's target against the batch's other targets and store
    negatives (a target equal to the pair's own is no negative)."""
    rng = np.random.default_rng(seed)
    mx.random.seed(seed)
    model, matrix = MLP(vectors.shape[1], MLP_HIDDEN), mx.array(vectors)
    optimizer = optim.AdamW(learning_rate=1e-3, weight_decay=0.01)

    def loss(model, source, target, negatives):
        candidates = mx.concatenate([target, negatives])
        logits = model(matrix[source]) @ matrix[candidates].T / MLP_TEMPERATURE
        same = candidates[None, :] == target[:, None]
        own = mx.arange(candidates.shape[0])[None, :] == mx.arange(target.shape[0])[:, None]
        logits = mx.where(same & ~own, -1e9, logits)
        return nn.losses.cross_entropy(logits, mx.arange(target.shape[0]), reduction="mean")

    state = [model.state, optimizer.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(source, target, negatives):
        value, grads = nn.value_and_grad(model, loss)(model, source, target, negatives)
        optimizer.update(model, grads)
        return value

    for _ in range(steps):
        picked = rng.integers(0, len(pairs.source), MLP_BATCH)
        negatives = rng.integers(0, len(vectors), MLP_NEGATIVES)
        step(mx.array(pairs.source[picked]), mx.array(pairs.target[picked]), mx.array(negatives))
        mx.eval(state)
    return lambda current: np.array(model(mx.array(current.astype(np.float32))))


def fit_maps(vectors: np.ndarray, pairs: Pairs, mlp_steps: int, seed: int = 0) -> dict[str, Map]:
    """The baselines that read the current concept alone, for one relation: any vector in, so a rollout
    can feed them their own predictions."""
    ridge_map, knn8 = ridge(vectors, pairs), knn_successor(vectors, pairs, NEIGHBOURS)
    return {
        "ridge": ridge_map,
        "knn_successor@1": knn_successor(vectors, pairs, 1),
        f"knn_successor@{NEIGHBOURS}": knn8,
        "ridge+knn": lambda current: unit(ridge_map(current) + knn8(current)),
        "mlp": infonce_mlp(vectors, pairs, mlp_steps, seed),
    }


def fit_baselines(vectors: np.ndarray, pairs: Pairs, mlp_steps: int, seed: int = 0) -> dict[str, Predictor]:
    """Every baseline for one relation, by the name its table row carries."""
    maps = fit_maps(vectors, pairs, mlp_steps, seed)
    return {
        "copy_last": copy_last(vectors),
        "context_mean": context_mean(vectors),
        **{name: _on_current(vectors, mapped) for name, mapped in maps.items()},
    }


def _on_current(vectors: np.ndarray, mapped: Map) -> Predictor:
    return lambda queries: mapped(vectors[queries.current])
