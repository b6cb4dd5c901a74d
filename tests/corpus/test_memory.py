"""The store as memory: exact nearest-source reads, never of the read concept's document, never of a
held-out edge, the same from the table as by search, and kept in the cache."""

import numpy as np

from meqg_mlx.corpus.memory import RelationMemory
from meqg_mlx.corpus.relations import RelationVocabulary, TrainingSplit, document_groups, held_out_rows, store_edges
from meqg_mlx.corpus.sequences import ConceptTable
from meqg_mlx.train.trainer import Trainer

from ..train.test_trainer import small_config

SLOTS = 4


def store_memory(store) -> tuple[RelationMemory, ConceptTable, np.ndarray]:
    table = ConceptTable(store)
    vocabulary = RelationVocabulary.of_store(store)
    split = TrainingSplit.of(store, table, vocabulary, 0.2)
    groups = document_groups(store, table)
    memory = RelationMemory(table.vectors, split.training_edges(table), len(vocabulary), SLOTS, groups)
    return memory, table, groups


def brute_force(memory: RelationMemory, vector: np.ndarray, relation: int, skip_group: int) -> tuple:
    """The top-SLOTS edges of `relation` by source cosine, leaving out sources of `skip_group` (-1: none)."""
    edges = memory.edges[relation]
    similarity = memory.vectors[edges.source] @ vector
    similarity[memory.groups[edges.source] == skip_group] = -np.inf
    top = np.argsort(-similarity, kind="stable")[:SLOTS]
    top = top[np.isfinite(similarity[top])]
    return np.sort(similarity[top])[::-1], edges


def test_a_read_is_the_nearest_sources_edges_outside_the_concepts_document(small_store):
    memory, table, groups = store_memory(small_store)
    relations = RelationVocabulary.of_store(small_store)
    rng = np.random.default_rng(0)
    rows = rng.choice(len(table.ids), 60, replace=False)
    kinds = rng.integers(0, len(relations), len(rows))
    memory.prepare(rows, kinds)
    read = memory.read_rows(rows, kinds)
    searched = memory.read(table.vectors[rows], kinds)
    own_document = 0
    for i, (row, kind) in enumerate(zip(rows, kinds)):
        expected, edges = brute_force(memory, table.vectors[row], int(kind), int(groups[row]))
        filled = read.targets[i] >= 0
        np.testing.assert_allclose(read.similarity[i][filled], expected, atol=1e-5)
        assert filled.sum() == len(expected)
        # its targets are those edges' targets, none out of the concept's document
        sources = {int(s) for s, t in zip(edges.source, edges.target) if t in set(read.targets[i][filled].tolist())}
        assert any(groups[s] != groups[row] for s in sources) or not filled.any()
        # a search for the same vector (not a store row: nothing left out) reads at least as near
        assert searched.similarity[i][0] >= read.similarity[i][0] - 1e-6
        own_document += int(searched.similarity[i][0] > read.similarity[i][0] + 1e-4)
    assert own_document > 0  # some reads differ only by the document's own edges
    # a read of rows not prepared is an error, never an empty read by accident
    unprepared = np.setdiff1d(np.arange(len(table.ids)), rows)[:1]
    try:
        memory.read_rows(unprepared, np.zeros(1, np.int64))
        raise AssertionError("read an unprepared row")
    except KeyError:
        pass


def test_no_held_out_edge_is_ever_read(small_store):
    """Validation queries read only trainable edges: the memory holds no edge out of a held-out concept."""
    memory, table, _ = store_memory(small_store)
    held = held_out_rows(small_store, table, 0.2)
    every = memory.all_edges()
    assert len(every) and not held[every.source].any()
    vocabulary = RelationVocabulary.of_store(small_store)
    edges = store_edges(small_store, table, vocabulary)
    asked = np.flatnonzero(held[edges.source])
    memory.prepare(edges.source[asked], edges.relation[asked])
    read = memory.read_rows(edges.source[asked], edges.relation[asked])
    filled = read.targets >= 0
    assert filled.any()
    kinds = np.broadcast_to(edges.relation[asked][:, None], read.targets.shape)
    reachable = set(zip(every.relation.tolist(), every.target.tolist()))
    assert set(zip(kinds[filled].tolist(), read.targets[filled].tolist())) <= reachable


def test_reads_are_kept_per_store_version_and_split(small_store, tmp_path):
    memory, table, _ = store_memory(small_store)
    rows, kinds = np.arange(40), np.zeros(40, np.int64)
    calls = []
    memory.prepare(rows, kinds, tmp_path / "memory-x", lambda stage, done, total: calls.append(done))
    assert calls and (tmp_path / "memory-x.npz").is_file()
    again, _, _ = store_memory(small_store)
    calls.clear()
    again.prepare(rows, kinds, tmp_path / "memory-x", lambda stage, done, total: calls.append(done))
    assert calls == []  # read from the cache
    for a, b in zip(memory.read_rows(rows, kinds), again.read_rows(rows, kinds)):
        np.testing.assert_array_equal(a, b)


def test_training_batches_read_the_memory_at_real_positions_only(small_store, tmp_path):
    trainer = Trainer(small_store, small_config(steps=1))
    trainer.cache_dir = tmp_path
    inputs, _, mask, relations = trainer.draw_batch()
    targets, similarity = trainer.memory_arrays(inputs, relations, mask)
    real = np.array(mask) > 0
    assert (np.array(targets)[real] != trainer.table.pad_row).any()
    assert (np.array(targets)[~real] == trainer.table.pad_row).all()  # padding reads nothing
    assert list(tmp_path.glob("memory-*.npz"))
