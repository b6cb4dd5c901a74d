import mlx.core as mx
import numpy as np
import pytest

from meqg_mlx.config import ObjectiveConfig
from meqg_mlx.diamond.objective import Objective, next_concept_losses, planner_nll
from meqg_mlx.vmm.model import ModelArgs


def unit(x):
    return x / mx.linalg.norm(x, axis=-1, keepdims=True)


def test_mean_prediction_loses_the_contrastive_term_but_not_l2():
    """LCM's failure mode: predicting the average is good for l2 and bad for InfoNCE."""
    mx.random.seed(0)
    targets = unit(mx.random.normal((16, 8)))
    mean = unit(mx.broadcast_to(targets.mean(0), targets.shape))
    noisy_truth = unit(targets + 0.8 * mx.random.normal(targets.shape))
    l2_mean, nce_mean = next_concept_losses(mean, targets)
    l2_truth, nce_truth = next_concept_losses(noisy_truth, targets)
    assert float(nce_truth) < float(nce_mean)
    assert float(l2_mean) < float(l2_truth) + 0.5
    perfect = next_concept_losses(targets, targets, negatives=unit(mx.random.normal((32, 8))))
    assert float(perfect[0]) == pytest.approx(0.0, abs=1e-6) and float(perfect[1]) < 0.5


def test_planner_nll_sums_levels():
    logits = mx.zeros((3, 2, 4))
    assert float(planner_nll(logits, mx.zeros((3, 2), dtype=mx.int32))) == pytest.approx(2 * 1.3862944, rel=1e-5)


def test_delta_is_the_sum_of_its_terms_and_geo_grows_with_model_size():
    args = ModelArgs(
        concept_dim=8,
        d_model=16,
        n_layers=1,
        d_state=4,
        head_dim=8,
        chunk_size=4,
        n_experts=4,
        top_k=1,
        d_ff=16,
        rvq_levels=2,
        rvq_codes=4,
    )
    objective = Objective(ObjectiveConfig(), args)
    mx.random.seed(1)
    x = unit(mx.random.normal((5, 8)))
    terms = objective(x, x, None, mx.zeros((5, 2, 4)), mx.zeros((5, 2), dtype=mx.int32), mx.array(1.0), mx.array(0.2))
    report = terms.report()
    assert report["Delta"] == pytest.approx(report["S_geo"] + report["S_ent"] + 0.5 * report["S_mod"], rel=1e-6)
    bigger = ModelArgs(**{**args.__dict__, "n_layers": 4})
    assert Objective(ObjectiveConfig(), bigger).s_geo(5) > objective.s_geo(5)


def test_the_context_penalty_charges_a_copy_and_not_the_truth():
    """Copying the current concept ranks it above the truth (penalty 1 - cos(x_t, x_t+1)); predicting the
    truth costs nothing; a context concept equal to the target is no mistake."""
    from meqg_mlx.corpus.sequences import context_counts
    from meqg_mlx.diamond.objective import context_penalty

    rows = mx.array([[0, 1, 2]])  # concepts 0, 1, 2 in a row; targets 1, 2, 3
    vectors = mx.eye(4)[None] * 0.8 + 0.2
    vectors = vectors / mx.linalg.norm(vectors, axis=-1, keepdims=True)
    concepts, targets = vectors[:, :3], vectors[:, 1:]
    counts = context_counts(rows, rows + 1, pad_row=9)
    mask = mx.ones((1, 3))
    cosine = float((vectors[0, 0] * vectors[0, 1]).sum())
    assert float(context_penalty(concepts, targets, concepts, counts, mask)) == pytest.approx(1 - cosine, rel=1e-5)
    assert float(context_penalty(targets, targets, concepts, counts, mask)) == pytest.approx(0.0, abs=1e-6)
    repeat = context_counts(mx.array([[0, 1]]), mx.array([[1, 0]]), pad_row=9)  # position 1's target is seen
    assert np.array(repeat).tolist() == [[[True, False], [False, True]]]
