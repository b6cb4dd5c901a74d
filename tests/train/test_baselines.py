"""Baselines on constructed data whose answers are known."""

import numpy as np

from meqg_mlx.train.baselines import Pairs, fit_baselines, fit_ridge, infonce_mlp, knn_successor
from meqg_mlx.train.metrics import Queries, score


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def linear_relation(count: int = 400, dim: int = 24, seed: int = 0):
    """Source i (rows 0..count-1) has target count + i = normalize(W x_i): a relation a ridge map can learn."""
    rng = np.random.default_rng(seed)
    sources = unit(rng.standard_normal((count, dim)))
    weights = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    vectors = np.concatenate([sources, unit(sources @ weights)])
    train = np.arange(count) % 5 != 0
    pairs = Pairs(np.arange(count)[train], count + np.arange(count)[train])
    held = np.arange(count)[~train]
    queries = Queries(held[:, None], count + held, np.full((len(held), 1), -1))
    return vectors, pairs, queries


def test_ridge_recovers_a_linear_relation_and_copy_does_not():
    vectors, pairs, queries = linear_relation()
    weights, bias = fit_ridge(vectors[pairs.source], vectors[pairs.target])
    assert np.abs(bias).max() < 0.05
    baselines = fit_baselines(vectors, pairs, mlp_steps=10)
    ridge = score(baselines["ridge"](queries), queries, vectors).metrics
    copy = score(baselines["copy_last"](queries), queries, vectors).metrics
    assert ridge["recall@1"] > 0.95 and ridge["l2"] < 0.05
    assert copy["recall@1"] < 0.1 and copy["copy_rate"] == 1.0


def test_knn_successor_names_the_category_of_the_nearest_training_member(graph_store):
    """Members cluster around their category: the hypernym of a held-out member is the hypernym of its
    most similar training members. A held-out category is no training target (its members' hypernym
    edges would state its hyponyms), so its members' queries have no answer to find."""
    from meqg_mlx.corpus.relations import RelationVocabulary, held_out_rows, store_edges, trainable
    from meqg_mlx.corpus.sequences import ConceptTable
    from meqg_mlx.train.validation import relation_queries

    table = ConceptTable(graph_store)
    vocabulary = RelationVocabulary.of_store(graph_store)
    edges = store_edges(graph_store, table, vocabulary)
    held = held_out_rows(graph_store, table, 0.2)
    train = trainable(edges, held, vocabulary)
    sets = {s.relation: s for s in relation_queries(edges, held, train, vocabulary, 500, 0)}
    hypernym = sets["hypernym"]
    assert not np.isin(hypernym.queries.current, hypernym.pairs.source).any()  # held-out sources only
    knn = knn_successor(table.vectors, hypernym.pairs, 8)(table.vectors[hypernym.queries.current])
    answerable = np.isin(hypernym.queries.target, hypernym.pairs.target)
    assert 0 < (~answerable).sum() and held[hypernym.queries.target[~answerable]].all()
    scored = score(knn, hypernym.queries, table.vectors)
    assert scored.hit_at_1[answerable].mean() > 0.9 and scored.hit_at_1[~answerable].sum() == 0
    hyponym = sets["hyponym"]
    assert (hyponym.queries.other_answers >= 0).sum(1).min() > 1  # a category's other members are right too


def test_the_infonce_mlp_learns_a_relation_from_its_pairs():
    vectors, pairs, queries = linear_relation(count=300, dim=16, seed=1)
    copy = score(vectors[queries.current], queries, vectors).metrics["recall@1"]
    learned = score(infonce_mlp(vectors, pairs, 300)(vectors[queries.current]), queries, vectors).metrics["recall@1"]
    assert learned > copy + 0.3
