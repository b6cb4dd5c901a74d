"""Vector search over the concept store's `vector` column.

Measured on this project's 2-core box (bench/store.py, 100k x 384): LanceDB's
flat scan took ~400 ms a query against numpy's 12 ms; its IVF_PQ (94 s to build)
reached recall@10 0.93-0.98 only with refine_factor, at 7-14 ms, and IVF_RQ
0.86, because each LanceDB query pays ~5 ms of planning. So meqg searches in memory:

* `ExactIndex`: the whole matrix, one GEMV per query. Exact; used for small stores.
* `PartitionedIndex`: IVF-flat. Spherical k-means partitions (2*sqrt(n)), vectors
  stored contiguously per partition in an .npy that is memory-mapped, `nprobe`
  partitions scored exactly in float32. `nprobe` is calibrated when the index is
  built: the smallest value whose recall@10 against brute force reaches the
  target (store.ann_target_recall, 0.98) on sampled stored vectors. Rows appended after the index was
  built are searched exactly and merged, so the index never hides data.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

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
    target_recall: float = 0.98

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
    def build(
        cls,
        ids: np.ndarray,
        vectors: np.ndarray,
        target_recall: float = 0.98,
        partitions: int | None = None,
        seed: int = 0,
    ) -> "PartitionedIndex":
        """Partition, then calibrate `nprobe` to reach `target_recall`@10 on sampled stored vectors."""
        nlist = min(partitions or cls.default_partitions(len(ids)), len(ids))
        centroids = spherical_kmeans(vectors, nlist, iterations=10, sample=max(50 * nlist, 100_000), seed=seed)
        labels, _ = assign(vectors, centroids)
        order = np.argsort(labels, kind="stable")
        offsets = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=nlist))]).astype(np.int64)
        index = cls(
            centroids,
            offsets,
            ids[order].astype(np.int64),
            np.ascontiguousarray(vectors[order]),
            int(ids.max()),
            nlist,
            target_recall,
        )
        index.nprobe = index.calibrate(target_recall, np.random.default_rng(seed))
        return index

    def calibrate(self, target_recall: float, rng: np.random.Generator, queries: int = 256, k: int = 10) -> int:
        """Smallest nprobe whose recall@k against brute force reaches the target.

        Queries are stored vectors with themselves left out of both answers, which
        measured close to held-out concepts on the stdlib store (bench/store.py).
        """
        rows = rng.choice(len(self.ids), min(queries, len(self.ids)), replace=False)
        sample = np.asarray(self.vectors[rows])
        truth = []
        for start in range(0, len(rows), 64):
            scores = np.asarray(self.vectors @ sample[start : start + 64].T).T
            truth.extend(
                set(self.ids[top_k(row, k + 1)].tolist()) - {int(self.ids[r])}
                for row, r in zip(scores, rows[start : start + 64])
            )

        def recall(nprobe: int) -> float:
            found = 0.0
            for query, row, expected in zip(sample, rows, truth):
                got = set(self.search(query, k + 1, nprobe)[0].tolist()) - {int(self.ids[row])}
                found += len(got & expected) / max(len(expected), 1)
            return found / len(rows)

        low, high = 0, len(self.centroids)
        probe = 1
        while probe < high:
            if recall(probe) >= target_recall:
                high = probe
                break
            low, probe = probe, probe * 2
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if recall(middle) >= target_recall else (middle, high)
        return high

    def save(self, location, table_version: int) -> None:
        """Write atomically beside the store's tables (`location.py`: a renamed directory, or a pointer on S3)."""
        with location.publishing(INDEX_DIR) as files:
            for name in ("centroids", "offsets", "ids", "vectors"):
                files.save_array(name, getattr(self, name))
            meta = {
                "format": INDEX_FORMAT,
                "max_id": self.max_id,
                "rows": len(self.ids),
                "partitions": len(self.centroids),
                "nprobe": self.nprobe,
                "target_recall": self.target_recall,
                "table_version": table_version,
            }
            files.write_text("meta.json", json.dumps(meta))

    @classmethod
    def load(cls, location) -> "PartitionedIndex | None":
        """The saved index (memory-mapped when local), or None when absent or unreadable (then search is exact)."""
        try:
            files = location.published(INDEX_DIR)
            if files is None:
                return None
            meta = json.loads(files.read_text("meta.json"))
            if meta.get("format") != INDEX_FORMAT:
                return None
            arrays = {name: files.load_array(name) for name in ("centroids", "offsets", "ids", "vectors")}
            if len(arrays["ids"]) != meta["rows"] or arrays["offsets"][-1] != meta["rows"]:
                return None
            return cls(
                np.asarray(arrays["centroids"]),
                np.asarray(arrays["offsets"]),
                np.asarray(arrays["ids"]),
                arrays["vectors"],
                int(meta["max_id"]),
                int(meta["nprobe"]),
                float(meta["target_recall"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @staticmethod
    def remove(location) -> None:
        location.remove(INDEX_DIR)


def merge_hits(*results: tuple[np.ndarray, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Combine (ids, scores) from several indexes into one best-first top k."""
    ids = np.concatenate([r[0] for r in results])
    scores = np.concatenate([r[1] for r in results])
    best = top_k(scores, k)
    return ids[best], scores[best]
