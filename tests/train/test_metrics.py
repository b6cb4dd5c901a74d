import numpy as np
import pytest

from meqg_mlx.train.metrics import nearest_neighbour_baseline, next_concept_metrics


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_perfect_predictions_score_perfectly_and_baselines_do_not():
    rng = np.random.default_rng(0)
    store = unit(rng.standard_normal((200, 16))).astype(np.float32)
    ids = np.arange(1000, 1200)
    current, following = np.arange(0, 50), np.arange(1, 51)
    seen = ids[current][:, None]
    perfect = next_concept_metrics(store[following], store[following], ids[following], seen, ids, store)
    assert perfect["l2"] == pytest.approx(0.0, abs=1e-6)
    assert {k: perfect[k] for k in ("contrastive_accuracy", "recall@1", "recall@10")} == {
        "contrastive_accuracy": 1.0,
        "recall@1": 1.0,
        "recall@10": 1.0,
    }
    repeat = next_concept_metrics(store[current], store[following], ids[following], seen, ids, store)
    assert repeat["recall@1"] < 0.1 and repeat["l2"] > 1.0 and 0.3 < repeat["contrastive_accuracy"] < 0.7
    neighbour = nearest_neighbour_baseline(store[current], ids[current], ids, store)
    assert not any((neighbour == store[current]).all(axis=1))
    assert next_concept_metrics(neighbour, store[following], ids[following], seen, ids, store)["recall@10"] < 0.5


def test_seen_concepts_are_never_ranked():
    store = unit(np.eye(4, dtype=np.float32) + 0.1)
    ids = np.array([7, 8, 9, 10])
    predicted = store[[0]]  # nearest is id 7 itself, then the rest
    unseen = next_concept_metrics(predicted, store[[1]], np.array([8]), np.array([[-1]]), ids, store, ks=(1,))
    seen = next_concept_metrics(predicted, store[[1]], np.array([8]), np.array([[7, -1]]), ids, store, ks=(1,))
    assert unseen["recall@1"] == 0.0 and seen["recall@1"] == 1.0
