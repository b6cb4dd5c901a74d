"""Spherical k-means on unit vectors: domain centroids and the search index's partitions."""

from __future__ import annotations

import numpy as np


def assign(vectors: np.ndarray, centroids: np.ndarray, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid by cosine for each row: (labels int32, best cosine float32)."""
    labels = np.empty(len(vectors), dtype=np.int32)
    best = np.empty(len(vectors), dtype=np.float32)
    for start in range(0, len(vectors), chunk):
        scores = vectors[start : start + chunk] @ centroids.T
        labels[start : start + chunk] = scores.argmax(axis=1)
        best[start : start + chunk] = scores.max(axis=1)
    return labels, best


def spherical_kmeans(
    vectors: np.ndarray, k: int, iterations: int = 15, sample: int = 200_000, seed: int = 0, restarts: int = 1
) -> np.ndarray:
    """Unit-norm centroids (k, d) trained on a sample with k-means++ seeding.

    Empty clusters are re-seeded from the points farthest from their centroid, so
    every returned centroid owns data. With restarts > 1 the run with the highest
    mean cosine to its centroid wins (k-means only finds local optima).
    """
    n = len(vectors)
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= n, got k={k}, n={n}")
    rng = np.random.default_rng(seed)
    data = vectors if n <= sample else vectors[rng.choice(n, sample, replace=False)]
    runs = [_lloyd(data, k, iterations, rng) for _ in range(restarts)]
    return max(runs, key=lambda centroids: float(assign(data, centroids)[1].mean()))


def _lloyd(data: np.ndarray, k: int, iterations: int, rng: np.random.Generator) -> np.ndarray:
    centroids = _kmeanspp(data, k, rng)
    for _ in range(iterations):
        labels, best = assign(data, centroids)
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels, data)
        counts = np.bincount(labels, minlength=k)
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            sums[empty] = data[np.argsort(best)[: len(empty)]]
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centroids = (sums / np.maximum(norms, 1e-12)).astype(np.float32)
    return centroids


def _kmeanspp(data: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding on cosine distance, over at most 20k candidate points."""
    pool = data if len(data) <= 20_000 else data[rng.choice(len(data), 20_000, replace=False)]
    chosen = [int(rng.integers(len(pool)))]
    dist = np.maximum(1.0 - pool @ pool[chosen[0]], 0.0)
    for _ in range(1, k):
        total = dist.sum()
        index = int(rng.choice(len(pool), p=dist / total)) if total > 0 else int(rng.integers(len(pool)))
        chosen.append(index)
        dist = np.minimum(dist, np.maximum(1.0 - pool @ pool[index], 0.0))
    return pool[chosen].astype(np.float32)
