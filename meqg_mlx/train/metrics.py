"""LCM-style validation metrics for next-concept prediction, and the baselines they must beat.

l2: mean squared distance to the true next concept; contrastive accuracy: the
prediction is closer to its own next concept than to every other next concept in
the batch; recall@k: the true next concept is among the k store concepts nearest
to the prediction. Baselines: repeat the last concept; the store's nearest
neighbour of the last concept (itself excluded).
"""

from __future__ import annotations

import numpy as np

from ..concepts.index import top_k


def next_concept_metrics(predicted: np.ndarray, target: np.ndarray, target_ids: np.ndarray,
                         store_ids: np.ndarray, store_vectors: np.ndarray, ks: tuple[int, ...] = (1, 10)) -> dict:
    """All inputs numpy; predicted/target (N, d) unit rows, target_ids (N,) ids in the store."""
    l2 = float(((predicted - target) ** 2).sum(-1).mean())
    similarity = predicted @ target.T
    contrastive = float((similarity.argmax(axis=1) == np.arange(len(predicted))).mean())
    scores = predicted @ store_vectors.T
    hits = {k: 0 for k in ks}
    for row, wanted in zip(scores, target_ids):
        found = store_ids[top_k(row, max(ks))]
        for k in ks:
            hits[k] += int(wanted in found[:k])
    return {"l2": l2, "contrastive_accuracy": contrastive,
            **{f"recall@{k}": hits[k] / len(predicted) for k in ks}}


def nearest_neighbour_baseline(current: np.ndarray, current_ids: np.ndarray, store_ids: np.ndarray,
                               store_vectors: np.ndarray) -> np.ndarray:
    """For each current concept, the most similar *other* store concept's vector."""
    scores = current @ store_vectors.T
    own = store_ids[None, :] == current_ids[:, None]
    scores = np.where(own, -np.inf, scores)
    return store_vectors[scores.argmax(axis=1)]
