"""Vector search over the concept store's `vector` column.

Measured on this project's 2-core box (bench/store.py, 100k x 384): LanceDB's
flat scan took ~400 ms a query against numpy's 12 ms and its IVF indexes pay
~5 ms of planning a query, so meqg searches in memory while the vectors fit:

* `ExactIndex`: the whole matrix, one GEMV per query. Exact; used for small stores.
* `PartitionedIndex`: IVF-flat, a Faiss `IndexIVFFlat` (inner product on unit
  rows = cosine) with spherical k-means partitions (2*sqrt(n)) and exact float32
  scoring of the `nprobe` partitions a query probes. meqg's own numpy IVF-flat
  was replaced by Faiss's because Faiss answered faster at every size measured
  at equal recall (README, "Against Faiss"). `nprobe` is calibrated when the
  index is built: the smallest value whose recall@10 against brute force reaches
  the target (store.ann_target_recall, 0.98) with 95% confidence on sampled stored
  vectors. Rows
  appended after the index was built are searched exactly and merged, so the
  index never hides data.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

INDEX_DIR = "index"
INDEX_FORMAT = 2  # 1 was meqg's own numpy IVF-flat


def load_faiss():
    """Faiss, imported on first use (a few hundred ms only stores past store.exact_search_max_rows pay).

    On macOS torch and faiss-cpu each bundle a libomp.dylib, and the second OpenMP runtime to
    start aborts the process (OMP Error #15, faiss-wheels issue 73). There both may load and
    Faiss keeps to one OpenMP thread, the workaround torchgeo and others ship; single queries
    do not use OpenMP threads anyway.
    """
    if sys.platform == "darwin":
        os.environ.setdefault("KMP_DUPLICATE_LIB_OK", "TRUE")
    import faiss

    if sys.platform == "darwin":
        faiss.omp_set_num_threads(1)
    return faiss


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
    """Faiss IVF-flat persisted under STORE/index (see module docstring)."""

    ivf: object  # faiss.IndexIVFFlat, ids are concept ids
    max_id: int
    nprobe: int
    target_recall: float = 0.98

    @property
    def partitions(self) -> int:
        return self.ivf.nlist

    @property
    def rows(self) -> int:
        return self.ivf.ntotal

    def search(self, query: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = self.search_many(query[None], k, nprobe)
        found = ids[0] >= 0
        return ids[0][found], scores[0][found]

    def search_many(self, queries: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of shape (len(queries), k); -1 ids pad rows with fewer than k hits."""
        params = load_faiss().SearchParametersIVF(nprobe=min(nprobe or self.nprobe, self.partitions))
        return self.ivf.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)

    @staticmethod
    def default_partitions(n: int) -> int:
        return max(1, int(2 * math.sqrt(n)))

    @staticmethod
    def training_rows(n: int) -> int:
        """How many sampled rows train the partitions of an n-row index."""
        return min(n, max(50 * PartitionedIndex.default_partitions(n), 100_000))

    @classmethod
    def build(
        cls,
        batches: Iterable[tuple[np.ndarray, np.ndarray]],
        sample_ids: np.ndarray,
        sample: np.ndarray,
        rows: int,
        target_recall: float = 0.98,
        partitions: int | None = None,
        seed: int = 0,
    ) -> "PartitionedIndex":
        """Train partitions on `sample` (stored rows drawn uniformly, `training_rows`), add the
        (ids, vectors) `batches` one at a time, then calibrate `nprobe` to reach
        `target_recall`@10. Memory: the index, one batch and the sample, never a second copy
        of every vector."""
        faiss = load_faiss()
        nlist = min(partitions or cls.default_partitions(rows), len(sample))
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(sample.shape[1]), sample.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.spherical, ivf.cp.niter, ivf.cp.seed = True, 10, seed
        ivf.cp.min_points_per_centroid = 1  # small test stores: no "provide more training points" on stderr
        ivf.train(np.ascontiguousarray(sample, dtype=np.float32))
        max_id = -1
        for ids, vectors in batches:
            ivf.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
            max_id = max(max_id, int(ids.max()))
        index = cls(ivf, max_id, nlist, target_recall)
        index.nprobe = index.calibrate(sample_ids, sample, target_recall, np.random.default_rng(seed))
        return index

    def calibrate(
        self,
        sample_ids: np.ndarray,
        sample: np.ndarray,
        target_recall: float,
        rng: np.random.Generator,
        queries: int = 256,
        k: int = 10,
    ) -> int:
        """Smallest nprobe whose recall@k against brute force reaches the target, with
        95% confidence (`confident_recall`).

        Queries are sampled stored vectors with themselves left out of both answers, which
        measured close to held-out concepts on the stdlib store (bench/store.py); brute
        force is the index itself probing every partition (exact: IVF-flat scores exactly).
        """
        rows = rng.choice(len(sample_ids), min(queries, len(sample_ids)), replace=False)
        own, queried = sample_ids[rows], np.ascontiguousarray(sample[rows], dtype=np.float32)
        exact = self.search_many(queried, k + 1, self.partitions)[1]
        truth = [set(found[found >= 0].tolist()) - {int(i)} for found, i in zip(exact, own)]

        def recall(nprobe: int) -> float:
            return confident_recall(held_out_recall(self.search_many(queried, k + 1, nprobe)[1], own, truth))

        low, high = 0, self.partitions
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
            files.write_file("ivf.faiss", lambda path: load_faiss().write_index(self.ivf, path))
            meta = {
                "format": INDEX_FORMAT,
                "max_id": self.max_id,
                "rows": self.rows,
                "partitions": self.partitions,
                "nprobe": self.nprobe,
                "target_recall": self.target_recall,
                "table_version": table_version,
            }
            files.write_text("meta.json", json.dumps(meta))

    @classmethod
    def load(cls, location) -> "PartitionedIndex | None":
        """The saved index, read into RAM, or None when absent or unreadable (then search is exact)."""
        try:
            files = location.published(INDEX_DIR)
            meta = _read_meta(files) if files is not None else None
            if meta is None:
                return None
            ivf = files.read_file("ivf.faiss", load_faiss().read_index)
            if ivf.ntotal != meta["rows"] or ivf.nlist != meta["partitions"]:
                return None
            return cls(ivf, int(meta["max_id"]), int(meta["nprobe"]), float(meta["target_recall"]))
        except (OSError, ValueError, KeyError, TypeError, RuntimeError):
            return None

    @staticmethod
    def saved_meta(location) -> dict | None:
        """The saved index's meta.json (rows, partitions, nprobe, target_recall), without reading
        the index itself (1.5 GB at a million rows), or None when absent or unreadable."""
        try:
            files = location.published(INDEX_DIR)
            return _read_meta(files) if files is not None else None
        except (OSError, ValueError):
            return None

    @staticmethod
    def remove(location) -> None:
        location.remove(INDEX_DIR)


def _read_meta(files) -> dict | None:
    meta = json.loads(files.read_text("meta.json"))
    return meta if isinstance(meta, dict) and meta.get("format") == INDEX_FORMAT else None


def held_out_recall(found: np.ndarray, own: np.ndarray, truth: list[set[int]]) -> np.ndarray:
    """Per-query recall of `found` ids (one row per query) against `truth`, the query's own row left out."""
    return np.array([len((set(f.tolist()) - {int(o)}) & t) / max(len(t), 1) for f, o, t in zip(found, own, truth)])


def confident_recall(per_query: np.ndarray, z: float = 1.645) -> float:
    """One-sided 95% lower bound of the mean recall: a setting calibrated on a few hundred
    sampled queries then holds for unseen ones (the plain mean measured 0.972 on held-out
    queries for a disk index calibrated to 0.98, bench/store.py --scale at 1M)."""
    if len(per_query) < 2:
        return float(np.mean(per_query)) if len(per_query) else 0.0
    return float(np.mean(per_query) - z * np.std(per_query, ddof=1) / np.sqrt(len(per_query)))


def merge_hits(*results: tuple[np.ndarray, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Combine (ids, scores) from several indexes into one best-first top k."""
    ids = np.concatenate([r[0] for r in results])
    scores = np.concatenate([r[1] for r in results])
    best = top_k(scores, k)
    return ids[best], scores[best]
