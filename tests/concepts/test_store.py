import json
import shutil

import numpy as np
import pytest

from meqg_mlx.concepts import ConceptStore, NewConcept
from meqg_mlx.errors import InputError, StoreError


def unit(rng, n, d=8):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def store(tmp_path):
    return ConceptStore.create(tmp_path / "s", dim=8, origin_model="test-model")


def concepts(store, n, rng, **kw):
    first = store.reserve_ids(n)
    return [NewConcept(first + i, f"concept number {first + i}", v, **kw) for i, v in enumerate(unit(rng, n))]


def test_add_search_get_round_trip(store):
    rng = np.random.default_rng(0)
    rows = concepts(store, 20, rng)
    store.add(rows)
    hits = store.search_vector(rows[7].vector, k=3)
    assert hits[0].concept_id == rows[7].concept_id and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert store.get([rows[3].concept_id])[0]["text"] == "concept number 3"
    reopened = ConceptStore.open(store.uri)
    assert reopened.count() == 20 and reopened.dim == 8


def test_ids_are_append_only_and_never_reused(store):
    rng = np.random.default_rng(1)
    store.add(concepts(store, 5, rng))
    lost = store.reserve_ids(3)  # reserved, then the writer "crashes" before writing
    again = ConceptStore.open(store.uri)
    assert again.reserve_ids(1) == lost + 3


def test_relations_and_neighbors(store):
    rng = np.random.default_rng(2)
    first = store.reserve_ids(3)
    v = unit(rng, 3)
    store.add(
        [
            NewConcept(
                first,
                "parent",
                v[0],
                relations=[(first + 1, "contains", 0.5), (first + 2, "contains", 0.5), (999, "contains", 1.0)],
            ),
            NewConcept(first + 1, "child one", v[1], relations=[(first, "defined_in", 1.0)]),
            NewConcept(first + 2, "child two", v[2]),
        ]
    )
    found = store.neighbors(first, "contains")
    assert sorted(t["text"] for _, _, t in found) == ["child one", "child two"]  # dangling 999 skipped
    assert [t["text"] for _, _, t in store.neighbors(first + 1)] == ["parent"]
    with pytest.raises(StoreError, match="no concept with id"):
        store.neighbors(12345)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.ones(5, np.float32), "dimension 5, the store expects 8"),
        (np.full(8, np.nan, np.float32), "NaN or Inf"),
        (np.zeros(8, np.float32), "all zeros"),
    ],
)
def test_bad_vectors_are_refused_and_store_untouched(store, bad, message):
    rng = np.random.default_rng(3)
    good = concepts(store, 2, rng)
    version = store.table.version
    good[1].vector = bad
    with pytest.raises(InputError, match=message):
        store.add(good)
    assert store.count() == 0 and store.table.version == version


def test_empty_text_unknown_kind_and_unreserved_ids_are_refused(store):
    rng = np.random.default_rng(4)
    row = concepts(store, 1, rng)[0]
    for change, message in [
        ({"text": "  "}, "empty text"),
        ({"kind": "poem"}, "unknown kind"),
        ({"concept_id": 10**6}, "was not reserved"),
    ]:
        bad = NewConcept(**{**row.__dict__, **change})
        with pytest.raises(StoreError, match=message):
            store.add([bad])
    assert store.count() == 0


def test_refuses_to_mix_models_or_dims(store):
    with pytest.raises(StoreError, match="holds 8-d vectors"):
        ConceptStore.open_or_create(store.uri, 384, "test-model")
    with pytest.raises(StoreError, match="refusing other-model"):
        ConceptStore.open_or_create(store.uri, 8, "other-model")


def test_missing_and_corrupt_stores(tmp_path, store):
    with pytest.raises(StoreError, match="no concept store at"):
        ConceptStore.open(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match="not a meqg concept store"):
        ConceptStore.open(tmp_path / "plain")
    with pytest.raises(StoreError, match="already exists"):
        ConceptStore.create(store.uri, 8, "test-model")
    broken = tmp_path / "broken"
    shutil.copytree(store.uri, broken)
    (broken / "meqg_store.json").write_text("{not json")
    with pytest.raises(StoreError, match="corrupt store metadata"):
        ConceptStore.open(broken)
    gone = tmp_path / "gone"
    shutil.copytree(store.uri, gone)
    shutil.rmtree(gone / "lance")
    with pytest.raises(StoreError, match="concepts table unreadable"):
        ConceptStore.open(gone)
    wrong_dim = tmp_path / "wrong_dim"
    shutil.copytree(store.uri, wrong_dim)
    meta = json.loads((wrong_dim / "meqg_store.json").read_text())
    (wrong_dim / "meqg_store.json").write_text(json.dumps({**meta, "dim": 16}))
    with pytest.raises(StoreError, match="does not have dim 16"):
        ConceptStore.open(wrong_dim)


def test_partitioned_index_sees_rows_added_after_it_was_built(tmp_path):
    from meqg_mlx.config import StoreConfig

    store = ConceptStore.create(
        tmp_path / "big", dim=8, origin_model="m", config=StoreConfig(exact_search_max_rows=100)
    )
    rng = np.random.default_rng(5)
    store.add(concepts(store, 300, rng))
    assert store.build_index()
    assert "IVF-flat" in store.index_kind()
    late = concepts(store, 1, rng)
    store.add(late)
    assert store.search_vector(late[0].vector, 1)[0].concept_id == late[0].concept_id


def test_optimize_compacts_fragments(store):
    rng = np.random.default_rng(6)
    for _ in range(4):
        store.add(concepts(store, 3, rng))
    assert store.table.stats()["fragment_stats"]["num_fragments"] == 4
    store.optimize()
    assert store.table.stats()["fragment_stats"]["num_fragments"] == 1
    assert store.count() == 12


def test_sampled_and_streamed_vectors_are_stored_rows(tmp_path):
    """A few sampled rows come by random reads, many by one scan; both are distinct stored rows."""
    store = ConceptStore.create(tmp_path / "s", 8, "m")
    assert store.sample_vectors(10)[1].shape == (0, 8)
    x = np.random.default_rng(0).standard_normal((3000, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    first = store.reserve_ids(len(x))
    store.add([NewConcept(first + i, f"concept {i}", v) for i, v in enumerate(x)])
    for count in (5, 2000, 5000):  # RANDOM_READS_MAX is 1024
        ids, vectors = store.sample_vectors(count)
        assert len(set(ids.tolist())) == len(ids) == min(count, len(x))
        np.testing.assert_allclose(vectors, x[ids - first], atol=1e-6)
    batches = list(store.vector_batches(rows=700))
    assert len(batches) >= 5 and all(len(ids) <= 700 for ids, _ in batches)
    assert sorted(np.concatenate([ids for ids, _ in batches]).tolist()) == list(range(first, first + len(x)))
    ids, vectors = store.all_vectors()
    np.testing.assert_allclose(vectors[np.argsort(ids)], x, atol=1e-6)
