import numpy as np
import pytest

from meqg_mlx.errors import ConfigError, InputError
from meqg_mlx.corpus.relations import (
    INVERSES,
    NEXT,
    RelationVocabulary,
    WalkSampler,
    held_out_rows,
    store_edges,
    trainable,
)
from meqg_mlx.corpus.sequences import ConceptTable, documents, split_documents

from ..conftest import GRAPH_CHILDREN, GRAPH_ROOTS


def test_vocabulary_starts_with_next_and_names_unknown_relations(graph_store):
    vocabulary = RelationVocabulary.of_store(graph_store)
    assert vocabulary.names == (NEXT, "antonym", "hypernym", "hyponym")
    assert vocabulary.ids(["hypernym", NEXT]) == [2, 0]
    with pytest.raises(InputError, match="unknown relation 'meronym'; this run knows next, antonym"):
        vocabulary.id("meronym")
    with pytest.raises(ConfigError, match=r"vmm.relations must start with 'next' and name each relation once"):
        RelationVocabulary(("hypernym", NEXT))


def test_edges_are_the_stores_relations_between_table_rows(graph_store):
    table = ConceptTable(graph_store)
    vocabulary = RelationVocabulary.of_store(graph_store)
    edges = store_edges(graph_store, table, vocabulary)
    members = GRAPH_ROOTS * GRAPH_CHILDREN
    assert len(edges.of(vocabulary.id("hypernym"))) == members == len(edges.of(vocabulary.id("hyponym")))
    assert len(edges.of(vocabulary.id("antonym"))) == members
    hypernyms = edges.of(vocabulary.id("hypernym"))
    assert (table.ids[hypernyms.target] % (GRAPH_CHILDREN + 1) == 0).all()  # every member's category
    with pytest.raises(InputError, match="lacks: the store grew new relation types"):
        store_edges(graph_store, table, RelationVocabulary((NEXT, "hypernym")))


def test_no_held_out_edge_in_any_training_walk(graph_store):
    """Walk the sampler over the trainable edges: no step leaves a held-out concept, and no step of a
    relation with an inverse enters one (it would state the held-out concept's edge backwards)."""
    table = ConceptTable(graph_store)
    vocabulary = RelationVocabulary.of_store(graph_store)
    edges = store_edges(graph_store, table, vocabulary)
    held = held_out_rows(graph_store, table, 0.2)
    assert 0.1 < held.mean() < 0.3
    keep = trainable(edges, held, vocabulary)
    assert 0 < keep.sum() < len(edges)
    real = {(int(s), int(r), int(t)) for s, t, r in zip(edges.source, edges.target, edges.relation)}
    rows, relations = WalkSampler(edges.where(keep)).walks(np.random.default_rng(0), 3000, 4)
    steps = 0
    for walk, followed in zip(rows, relations):
        assert len(set(walk[walk >= 0].tolist())) == (walk >= 0).sum()  # never revisits
        for at in range(len(followed)):
            if followed[at] < 0:
                assert (walk[at + 1 :] < 0).all() and (followed[at:] < 0).all()
                break
            source, target, relation = int(walk[at]), int(walk[at + 1]), int(followed[at])
            assert (source, relation, target) in real
            assert not held[source]
            assert not (vocabulary.names[relation] in INVERSES and held[target])
            steps += 1
    assert steps > 6000  # walks are mostly longer than one step
    assert set(relations[relations >= 0].tolist()) == {1, 2, 3}  # every relation is walked


def test_held_out_concepts_are_the_validation_documents(small_store):
    table = ConceptTable(small_store)
    held = held_out_rows(small_store, table, 0.2)
    train, validation = split_documents(documents(small_store), 0.2)
    assert held[table.row_of[np.concatenate([d.ids for d in validation])]].all()
    assert not held[table.row_of[np.concatenate([d.ids for d in train])]].any()
    vocabulary = RelationVocabulary.of_store(small_store)
    assert {"contains", "defined_in", "describes", "uses"} <= set(vocabulary.names)
    edges = store_edges(small_store, table, vocabulary)
    keep = trainable(edges, held, vocabulary)
    contains = vocabulary.id("contains")
    into_held = keep & (edges.relation == contains) & held[edges.target]
    assert not into_held.any()  # contains states defined_in backwards


def test_an_empty_edge_set_cannot_be_walked():
    from meqg_mlx.corpus.relations import Edges

    empty = np.zeros(0, np.int64)
    with pytest.raises(InputError, match="no relation edges to walk"):
        WalkSampler(Edges(empty, empty, empty))
