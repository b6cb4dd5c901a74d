"""The transformer baseline for `next` on constructed documents whose next concept is known."""

import mlx.core as mx
import numpy as np

from meqg_mlx.concepts.store import ConceptStore, NewConcept
from meqg_mlx.corpus.sequences import ConceptTable, documents, split_documents, tiled_windows
from meqg_mlx.train.base_lcm import BaseLCM, Budget, ModelArgs, document_predictor, fit_base_lcm
from meqg_mlx.train.baselines import copy_last
from meqg_mlx.train.metrics import score
from meqg_mlx.train.validation import Pairs, document_queries

DIM, DOCS, LENGTH = 16, 60, 10


def rotation_store(path) -> ConceptStore:
    """DOCS documents of LENGTH concepts, each the one before rotated by one fixed orthogonal map: a
    successor a sequence model can learn and a copy cannot."""
    rng = np.random.default_rng(0)
    rotation = np.linalg.qr(rng.standard_normal((DIM, DIM)))[0].astype(np.float32)
    store = ConceptStore.create(path, DIM, "rotation-test")
    store.reserve_ids(DOCS * LENGTH)
    concepts = []
    for doc in range(DOCS):
        vector = rng.standard_normal(DIM).astype(np.float32)
        for step in range(LENGTH):
            vector = vector / np.linalg.norm(vector)
            concepts.append(NewConcept(doc * LENGTH + step, f"d{doc} s{step}", vector, key=f"doc:{doc}#{step}"))
            vector = vector @ rotation
    store.add(concepts)
    return store


def test_the_transformer_learns_a_successor_on_held_out_documents_and_copy_does_not(tmp_path):
    store = rotation_store(tmp_path / "rotation")
    table = ConceptTable(store)
    train, held = split_documents(documents(store), 0.2)
    budget = Budget(
        d_model=32, steps=300, batch_size=16, seq_len=6, store_negatives=32, learning_rate=3e-3, warmup_steps=10,
        weight_decay=0.0, temperature=0.05,
    )  # fmt: skip
    model = fit_base_lcm(table, train, budget)
    queries = document_queries(table.window_rows(tiled_windows(held, budget.seq_len)), Pairs([], [])).queries
    learned = score(document_predictor(model, table.vectors)(queries), queries, table.vectors).metrics
    copied = score(copy_last(table.vectors)(queries), queries, table.vectors).metrics
    assert learned["recall@1"] > 0.8, learned
    assert copied["recall@1"] == 0.0 and copied["copy_rate"] == 1.0


def test_a_prediction_reads_only_the_concepts_before_it():
    model = BaseLCM(ModelArgs(concept_dim=8, d_model=16, max_len=6))
    context = np.random.default_rng(0).standard_normal((3, 6, 8)).astype(np.float32)
    changed = context.copy()
    changed[:, 4:] = 0.0
    before, after = np.array(model(mx.array(context))), np.array(model(mx.array(changed)))
    np.testing.assert_allclose(before[:, :4], after[:, :4], atol=1e-5)
    assert np.abs(before[:, 4:] - after[:, 4:]).max() > 1e-3
