"""Domains: k-means centroids over the store's vectors, the prior the VMM router uses."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from .kmeans import assign, spherical_kmeans

_WORD = re.compile(r"[A-Za-z][a-z]{3,}")
REPRESENTATIVES = 5


def label_domains(texts: list[str], labels: np.ndarray, k: int, words: int = 3) -> list[str]:
    """Name each domain by the words most over-represented in it (a readable tag, not a class)."""
    per_domain = [Counter() for _ in range(k)]
    overall: Counter = Counter()
    for text, label in zip(texts, labels):
        tokens = set(w.lower() for w in _WORD.findall(text))
        per_domain[label].update(tokens)
        overall.update(tokens)
    total = max(len(texts), 1)
    names = []
    for counter in per_domain:
        # ties by the word itself: a set's order (and so the counter's) changes with the hash seed
        scored = sorted(counter, key=lambda w: (-counter[w] * np.log(total / overall[w]), w))
        names.append(" ".join(scored[:words]) or "empty")
    return names


def compute_domains(ids: np.ndarray, vectors: np.ndarray, texts: list[str], k: int, seed: int = 0):
    """k-means domains: (domain rows for the domains table, per-concept labels, per-concept scores)."""
    k = max(1, min(k, len(ids)))
    centroids = spherical_kmeans(vectors, k, seed=seed, restarts=3)
    labels, _ = assign(vectors, centroids)
    scores = vectors @ centroids.T
    names = label_domains(texts, labels, k)
    rows = []
    for d in range(k):
        members = np.flatnonzero(labels == d)
        cosines = scores[members, d]
        best = members[np.argsort(-cosines)[:REPRESENTATIVES]]
        rows.append(
            {
                "domain": d,
                "label": names[d],
                "centroid": centroids[d].tolist(),
                "variance": float(np.mean(1.0 - cosines)) if len(members) else 0.0,
                "count": int(len(members)),
                "representative_ids": ids[best].tolist(),
            }
        )
    return rows, labels, scores.astype(np.float32)
