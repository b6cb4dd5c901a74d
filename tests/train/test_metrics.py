import numpy as np

from meqg_mlx.train.metrics import nearest_neighbour_baseline, next_concept_metrics


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_perfect_predictions_score_perfectly_and_baselines_do_not():
    rng = np.random.default_rng(0)
    store = unit(rng.standard_normal((200, 16))).astype(np.float32)
    ids = np.arange(1000, 1200)
    current, following = np.arange(0, 50), np.arange(1, 51)
    perfect = next_concept_metrics(store[following], store[following], ids[following], ids, store)
    assert perfect == {"l2": 0.0, "contrastive_accuracy": 1.0, "recall@1": 1.0, "recall@10": 1.0}
    repeat = next_concept_metrics(store[current], store[following], ids[following], ids, store)
    assert repeat["recall@1"] == 0.0 and repeat["l2"] > 1.0
    neighbour = nearest_neighbour_baseline(store[current], ids[current], ids, store)
    assert not any((neighbour == store[current]).all(axis=1))
    assert next_concept_metrics(neighbour, store[following], ids[following], ids, store)["recall@10"] < 0.5
