"""How a store is searched: an exact scan, the in-memory IVF-flat index (`index.py`) or LanceDB's
disk-resident IVF_RQ index (`disk_index.py`); which one, building it, loading it, describing it.

The store owns one `SearchIndex` and keeps its face (`search_vector`, `nearest`, `build_index`,
`index_kind`); a new index kind is a file beside `index.py` and a branch in `load` and `build`.
Rows added after an index was built are searched exactly beside it until it is rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import InputError
from .disk_index import INDEX_NAME as DISK_INDEX_NAME, DiskIndex
from .index import ExactIndex, PartitionedIndex, merge_hits
from .schema import CONCEPTS_TABLE

Search = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]  # (query, k) -> (ids, cosines)


def still_covers(indexed: int, rows: int) -> bool:
    """An index over `indexed` rows is kept while the rows added since are under 10% of it."""
    return rows - indexed < 0.1 * indexed


class SearchIndex:
    """The store's search, loaded on first use and forgotten whenever the store's rows change."""

    def __init__(self, store):
        self.store = store
        self._search: Search | None = None

    def forget(self) -> None:
        self._search = None

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._search is None:
            self._search = self.load()
        return self._search(query, k)

    def load(self) -> Search:
        store = self.store
        disk = DiskIndex.from_meta(store.meta.get("disk_index"))
        if disk is not None:
            return lambda q, k: disk.search(store.table, q, k)  # LanceDB scans rows added since, exactly
        partitioned = PartitionedIndex.load(store.location)
        if partitioned is None:
            return ExactIndex(*store.all_vectors()).search
        delta = ExactIndex(*store.all_vectors(f"concept_id > {partitioned.max_id}"))
        return lambda q, k: merge_hits(partitioned.search(q, k), delta.search(q, k), k=k)

    def build(self, force: bool = False, kind: str | None = None) -> bool:
        """(Re)build when the store is large enough; returns whether it did (`ConceptStore.build_index`)."""
        store = self.store
        if kind not in (None, "memory", "disk"):
            raise InputError(f"unknown index kind {kind!r}: memory or disk")
        with store.writing():
            n = store.count()
            self.forget()
            if n < store.config.exact_search_max_rows and not force:
                self.drop_disk()
                PartitionedIndex.remove(store.location)
                return False
            kind = kind or ("disk" if n >= store.config.disk_index_min_rows else "memory")
            if kind == "disk":
                existing = DiskIndex.from_meta(store.meta.get("disk_index"))
                if existing is not None and not force and still_covers(existing.rows, n):
                    return False
                index = DiskIndex.build(
                    store.table, store.vector_batches(), n, store.config.ann_target_recall, store.sample_vectors(128)
                )
                store.meta["disk_index"] = index.to_meta()
                store.write_meta()
                PartitionedIndex.remove(store.location)
                return True
            self.drop_disk()
            existing = PartitionedIndex.load(store.location)
            if existing is not None and not force and still_covers(existing.rows, n):
                return False
            sample_ids, sample = store.sample_vectors(PartitionedIndex.training_rows(n))
            index = PartitionedIndex.build(
                store.vector_batches(), sample_ids, sample, n, target_recall=store.config.ann_target_recall
            )
            index.save(store.location, store.table.version)
            return True

    def drop_disk(self) -> None:
        store = self.store
        if store.meta.pop("disk_index", None) is not None:
            store.write_meta()
        if any(index.name == DISK_INDEX_NAME for index in store.table.list_indices()):
            store.table.drop_index(DISK_INDEX_NAME)

    def describe(self) -> str:
        store = self.store
        disk = DiskIndex.from_meta(store.meta.get("disk_index"))
        if disk is not None:
            return disk.describe(store.location.bytes_under(f"lance/{CONCEPTS_TABLE}.lance/_indices"))
        saved = PartitionedIndex.saved_meta(store.location)
        if saved is None:
            return f"exact (in-memory matrix, {store.count() * store.dim * 4 / 2**20:.1f} MB in RAM)"
        return (
            f"Faiss IVF-flat: {saved['partitions']} partitions, nprobe {saved['nprobe']} "
            f"(calibrated to recall@10 {saved['target_recall']}), {saved['rows']} rows indexed, "
            f"{saved['rows'] * store.dim * 4 / 2**20:.1f} MB of vectors in RAM"
        )
