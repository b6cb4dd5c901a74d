import numpy as np
import pytest

from meqg_mlx.train.metrics import Queries, paired_difference, score


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def chain_queries(count: int) -> Queries:
    """Concept i+1 follows concept i; each query has seen concepts i-1 and i."""
    current = np.arange(1, count + 1)
    return Queries(np.stack([current - 1, current], 1), current + 1, np.full((count, 1), -1))


def test_perfect_predictions_score_perfectly():
    store = unit(np.random.default_rng(0).standard_normal((300, 16)))
    queries = chain_queries(100)
    perfect = score(store[queries.target], queries, store).metrics
    assert perfect == pytest.approx(
        {"recall@1": 1, "recall@10": 1, "mrr": 1, "l2": 0, "contrastive_accuracy": 1, "par": 1, "copy_rate": 0},
        abs=1e-6,
    )


def test_a_copy_model_copies_by_every_measure():
    """Copying the current concept: its PAR is high (it resembles the context more than the truth does) and
    every nearest concept is a context concept; with the context excluded it ranks the input's neighbours."""
    store = unit(np.random.default_rng(1).standard_normal((300, 16)))
    queries = chain_queries(100)
    copy = score(store[queries.current], queries, store).metrics
    assert copy["copy_rate"] == 1.0 and copy["par"] > 2.0
    assert copy["recall@1"] < 0.05 and copy["l2"] > 1.5 and 0.3 < copy["contrastive_accuracy"] < 0.7


def test_context_and_other_answers_are_never_candidates():
    store = unit(np.eye(5, dtype=np.float32) + 0.1)
    predicted = store[[0]]  # nearest: row 0 itself, then the rest tied
    plain = Queries(np.array([[3]]), np.array([1]), np.array([[-1]]))
    assert score(predicted, plain, store, ks=(1,)).metrics["recall@1"] == 0.0
    seen = Queries(np.array([[3, 0]]), np.array([1]), np.array([[-1]]))
    assert score(predicted, seen, store, ks=(1,)).metrics["recall@1"] == 1.0  # row 0 is context: excluded
    other = Queries(np.array([[3]]), np.array([1]), np.array([[0, -1]]))
    scored = score(predicted, other, store, ks=(1,))
    assert scored.metrics["recall@1"] == 1.0 and scored.reciprocal_rank.tolist() == [1.0]


def test_reciprocal_ranks_count_the_candidates_scored_above_the_truth():
    store = unit(np.array([[1, 0], [0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0, 1]], np.float32))
    queries = Queries(np.array([[4]]), np.array([3]), np.array([[-1]]))
    scored = score(store[[0]], queries, store)
    assert scored.reciprocal_rank.tolist() == [0.25] and scored.hit_at_1.tolist() == [0.0]


def test_paired_difference_and_its_interval():
    rng = np.random.default_rng(0)
    better = (rng.random(2000) < 0.6).astype(float)
    worse = np.where(rng.random(2000) < 0.8, better, 0.0)
    difference, low, high = paired_difference(better, worse)
    assert difference == pytest.approx(better.mean() - worse.mean()) and 0 < low < difference < high
    assert paired_difference(better, better) == (0.0, 0.0, 0.0)
