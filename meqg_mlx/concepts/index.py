"""Vector search over the concept store's `vector` column.

Measured on this project's 2-core box (bench/store.py): LanceDB's flat scan is
~30x slower than a numpy matrix product, and its IVF_PQ/IVF_RQ indexes lose
recall (0.86-0.98 at 100k) and barely beat numpy because each query pays ~5 ms of
planning. So meqg searches in memory:

* `ExactIndex`: the whole matrix, one GEMV per query. Exact; used for small stores.
* `PartitionedIndex`: IVF-flat. Spherical k-means partitions, vectors stored
  contiguously per partition in an .npy that is memory-mapped, `nprobe`
  partitions scored exactly in float32. Rows appended after the index was built
  are searched exactly and merged, so the index never hides data.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .kmeans import assign, spherical_kmeans

INDEX_DIR = "index"
INDEX_FORMAT = 1


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first."""
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return part[np.argsort(-scores[part], kind="stable")]


@dataclass
class ExactIndex:
    """All vectors in one matrix; exact cosine (vectors are unit rows)."""

    ids: np.ndarray
    vectors: np.ndarray

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = self.vectors @ query
        best = top_k(scores, k)
        return self.ids[best], scores[best]


@dataclass
class PartitionedIndex:
    """IVF-flat index persisted under STORE/index (see module docstring)."""

    centroids: np.ndarray
    offsets: np.ndarray
    ids: np.ndarray
    vectors: np.ndarray
    max_id: int
    nprobe: int

    def search(self, query: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        probes = top_k(self.centroids @ query, nprobe or self.nprobe)
        spans = [(int(self.offsets[p]), int(self.offsets[p + 1])) for p in probes]
        scores = np.concatenate([self.vectors[a:b] @ query for a, b in spans])
        rows = np.concatenate([np.arange(a, b) for a, b in spans])
        best = top_k(scores, k)
        return self.ids[rows[best]], scores[best]

    @staticmethod
    def default_partitions(n: int) -> int:
        return max(1, int(2 * math.sqrt(n)))

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, nprobe: int,
              partitions: int | None = None, seed: int = 0) -> "PartitionedIndex":
        nlist = min(partitions or cls.default_partitions(len(ids)), len(ids))
        centroids = spherical_kmeans(vectors, nlist, iterations=10, sample=max(50 * nlist, 100_000), seed=seed)
        labels, _ = assign(vectors, centroids)
        order = np.argsort(labels, kind="stable")
        offsets = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=nlist))]).astype(np.int64)
        return cls(centroids, offsets, ids[order].astype(np.int64), np.ascontiguousarray(vectors[order]),
                   int(ids.max()), nprobe)

    def save(self, store_path: Path, table_version: int) -> None:
        """Write atomically: a new directory renamed over the old one."""
        target = store_path / INDEX_DIR
        tmp = Path(tempfile.mkdtemp(prefix=".index-", dir=store_path))
        for name in ("centroids", "offsets", "ids", "vectors"):
            np.save(tmp / f"{name}.npy", getattr(self, name))
        meta = {"format": INDEX_FORMAT, "max_id": self.max_id, "rows": len(self.ids),
                "partitions": len(self.centroids), "nprobe": self.nprobe, "table_version": table_version}
        (tmp / "meta.json").write_text(json.dumps(meta))
        old = store_path / ".index-old"
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, store_path: Path) -> "PartitionedIndex | None":
        """The saved index, memory-mapped, or None when absent or unreadable (then search is exact)."""
        directory = store_path / INDEX_DIR
        try:
            meta = json.loads((directory / "meta.json").read_text())
            if meta.get("format") != INDEX_FORMAT:
                return None
            arrays = {name: np.load(directory / f"{name}.npy", mmap_mode="r")
                      for name in ("centroids", "offsets", "ids", "vectors")}
        except (OSError, ValueError):
            return None
        if len(arrays["ids"]) != meta["rows"] or arrays["offsets"][-1] != meta["rows"]:
            return None
        return cls(np.asarray(arrays["centroids"]), np.asarray(arrays["offsets"]), np.asarray(arrays["ids"]),
                   arrays["vectors"], int(meta["max_id"]), int(meta["nprobe"]))

    @staticmethod
    def remove(store_path: Path) -> None:
        shutil.rmtree(store_path / INDEX_DIR, ignore_errors=True)


def merge_hits(*results: tuple[np.ndarray, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Combine (ids, scores) from several indexes into one best-first top k."""
    ids = np.concatenate([r[0] for r in results])
    scores = np.concatenate([r[1] for r in results])
    best = top_k(scores, k)
    return ids[best], scores[best]
