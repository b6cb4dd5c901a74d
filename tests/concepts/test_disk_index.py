"""The disk-resident LanceDB index (disk_index.py) on a real store of stdlib concepts."""

from __future__ import annotations

import shutil

import numpy as np

from meqg_mlx.concepts import ConceptStore, NewConcept
from meqg_mlx.concepts.disk_index import INDEX_NAME
from meqg_mlx.config import StoreConfig

SMALL = StoreConfig(exact_search_max_rows=100, disk_index_min_rows=100)


def test_a_large_store_gets_a_calibrated_disk_index_that_sees_later_rows(tmp_path, small_store_path, embedder):
    shutil.copytree(small_store_path, tmp_path / "store")
    store = ConceptStore.open(tmp_path / "store", SMALL)
    assert store.build_index()
    reopened = ConceptStore.open(tmp_path / "store", SMALL)
    settings = reopened.meta["disk_index"]
    assert settings["kind"] == "IVF_RQ" and settings["recall"] >= SMALL.ann_target_recall
    assert "disk-resident LanceDB IVF_RQ" in reopened.index_kind()
    assert any(index.name == INDEX_NAME for index in reopened.table.list_indices())

    ids, vectors = reopened.all_vectors()
    exact = vectors @ vectors[::9].T
    found = [reopened.nearest(v, 10)[0] for v in vectors[::9]]
    recall = np.mean([len(set(f) & set(ids[np.argsort(-exact[:, j])[:10]])) / 10 for j, f in enumerate(found)])
    # calibrated on other sampled rows; these queries it did not see, so the target less their sampling
    # error: three binomial standard deviations over the neighbour slots checked
    slots = 10 * len(found)
    target = SMALL.ann_target_recall
    print(f"recall@10 {recall:.3f} over {len(found)} queries (target {target})")
    assert recall >= target - 3 * np.sqrt(target * (1 - target) / slots)

    text = "Copy a directory tree, preserving file metadata."
    first = reopened.reserve_ids(1)
    reopened.add([NewConcept(first, text, embedder.encode([text])[0], source="test")])
    late = ConceptStore.open(tmp_path / "store", SMALL)
    assert late.search_vector(embedder.encode([text])[0], 1)[0].concept_id == first

    assert late.build_index(force=True, kind="memory")  # switching back drops the LanceDB index
    memory = ConceptStore.open(tmp_path / "store", SMALL)
    assert "disk_index" not in memory.meta and "Faiss IVF-flat" in memory.index_kind()
    assert not any(index.name == INDEX_NAME for index in memory.table.list_indices())
