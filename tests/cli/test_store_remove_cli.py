"""`meqg store remove`: concepts and the relations pointing at them deleted as one store version; the
domains and the search index stay true to what is left; unknown ids change nothing."""

import json
import shutil

import numpy as np

from meqg_mlx.concepts import ConceptStore
from meqg_mlx.concepts.store import NewConcept

from ..conftest import cli, meqg


def pointing(store: ConceptStore, ids: set[int]) -> int:
    return sum(
        1 for r in store.columns(["relations"]).to_pylist() for x in r["relations"] or [] if x["target_id"] in ids
    )


def test_remove_deletes_concepts_and_their_incoming_relations_in_one_version(small_store_path, tmp_path):
    path = tmp_path / "store"
    shutil.copytree(small_store_path, path)
    store = ConceptStore.open(path)
    store.build_index(force=True, kind="memory")  # a Faiss index holding every vector
    counts: dict[int, int] = {}
    for row in store.columns(["relations"]).to_pylist():
        for relation in row["relations"] or []:
            counts[relation["target_id"]] = counts.get(relation["target_id"], 0) + 1
    gone = sorted(counts, key=counts.get)[-2:]  # the two concepts most pointed at
    vectors, version, count = store.vectors(gone), store.table.version, store.count()
    assert pointing(store, set(gone)) == counts[gone[0]] + counts[gone[1]] > 0

    unknown = cli("store", "remove", str(gone[0]), "99999999", "--store", str(path))
    assert (
        unknown.returncode == 2 and unknown.stderr.count("\n") == 1 and "no concept with id 99999999" in unknown.stderr
    )
    assert ConceptStore.open(path).table.version == version  # refused before anything changed

    done = meqg("store", "remove", *map(str, gone), "--store", str(path), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"removed": 2, "relations_dropped": counts[gone[0]] + counts[gone[1]],
                                       "version": version + 1}  # fmt: skip
    after = ConceptStore.open(path)
    assert after.count() == count - 2 and after.get(gone) == [] and pointing(after, set(gone)) == 0
    assert sum(d["count"] for d in after.domains()) == count - 2
    assert not set(gone) & {i for d in after.domains() for i in d["representative_ids"]}
    for vector in vectors:
        ids, _ = after.nearest(vector, 10)
        assert not set(ids.tolist()) & set(gone)  # the index no longer finds them


def test_remove_by_source_takes_the_write_back_concepts(small_store_path, tmp_path):
    path = tmp_path / "store"
    shutil.copytree(small_store_path, path)
    store = ConceptStore.open(path)
    first = store.reserve_ids(2)
    vector = np.ones(store.dim, np.float32) / np.sqrt(store.dim)
    store.add([NewConcept(first + i, f"an inverted text {i}", vector, source="inversion") for i in range(2)])
    done = meqg("store", "remove", "--source", "inversion", "--store", str(path))
    assert done.returncode == 0 and "removed 2 concepts" in done.stdout, done.stderr
    assert ConceptStore.open(path).columns(["concept_id"], where="source = 'inversion'").num_rows == 0
    again = cli("store", "remove", "--source", "inversion", "--store", str(path))
    assert again.returncode == 2 and "no concept of source 'inversion'" in again.stderr
    nothing = cli("store", "remove", "--store", str(path))
    assert nothing.returncode == 2 and "give the concept ids to remove, or --source SOURCE" in nothing.stderr
