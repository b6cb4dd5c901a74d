"""LCM-style validation metrics for next-concept prediction, and the baselines they must beat.

l2: mean squared distance to the true next concept; contrastive accuracy (LCM's
definition): the fraction of the batch's other next concepts that are farther from
the prediction than its own next concept (0.5 is chance); recall@k: the true next concept is
among the k store concepts nearest to the prediction. A document never repeats a concept (the store dedups), so the
concepts already seen in the window are excluded from every method's candidates
(which makes "repeat the last concept" rank the input's neighbours). Baselines:
repeat the last concept; the store's nearest neighbour of the last concept.
"""

from __future__ import annotations

import numpy as np

from ..concepts.index import top_k


def next_concept_metrics(
    predicted: np.ndarray,
    target: np.ndarray,
    target_ids: np.ndarray,
    seen_ids: np.ndarray,
    store_ids: np.ndarray,
    store_vectors: np.ndarray,
    ks: tuple[int, ...] = (1, 10),
) -> dict:
    """All inputs numpy; predicted/target (N, d) unit rows, target_ids (N,) ids in the store,
    seen_ids (N, S) the ids already seen before each target (-1 pads)."""
    l2 = float(((predicted - target) ** 2).sum(-1).mean())
    similarity = predicted @ target.T
    own = np.diag(similarity)[:, None]
    contrastive = float(((similarity < own).sum(1) / max(len(predicted) - 1, 1)).mean())
    scores = predicted @ store_vectors.T
    order = np.argsort(store_ids)
    at = np.minimum(np.searchsorted(store_ids[order], seen_ids), len(order) - 1)
    seen_rows = np.where(store_ids[order[at]] == seen_ids, order[at], -1)
    hits = {k: 0 for k in ks}
    for row, wanted, seen in zip(scores, target_ids, seen_rows):
        row[seen[seen >= 0]] = -np.inf
        found = store_ids[top_k(row, max(ks))]
        for k in ks:
            hits[k] += int(wanted in found[:k])
    return {"l2": l2, "contrastive_accuracy": contrastive, **{f"recall@{k}": hits[k] / len(predicted) for k in ks}}


def nearest_neighbour_baseline(
    current: np.ndarray, current_ids: np.ndarray, store_ids: np.ndarray, store_vectors: np.ndarray
) -> np.ndarray:
    """For each current concept, the most similar *other* store concept's vector."""
    scores = current @ store_vectors.T
    own = store_ids[None, :] == current_ids[:, None]
    scores = np.where(own, -np.inf, scores)
    return store_vectors[scores.argmax(axis=1)]
