import itertools
import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from meqg_mlx.diamond.ledger import (
    draw,
    block_logprob_mc,
    collapse_pressure,
    marginal_logprobs,
    phi_exact,
    phi_mc,
    s_mod_exact,
    s_mod_mc,
)
from meqg_mlx.diamond.view import View


class TableCodes:
    """An autoregressive view of an explicit joint table, for checking MC against exact."""

    def __init__(self, log_joint: mx.array):
        self.log_joint = log_joint
        self.levels, self.codes = log_joint.ndim, log_joint.shape[0]

    def conditional_logprobs(self, prefix):
        k = prefix.shape[1]
        marginal = marginal_logprobs(self.log_joint, tuple(range(k + 1)))  # (C,)*(k+1)
        rows = (
            marginal[tuple(prefix[:, i] for i in range(k))]
            if k
            else mx.broadcast_to(marginal, (prefix.shape[0], self.codes))
        )
        return rows - mx.logsumexp(rows, axis=-1, keepdims=True)


def random_joint(shape, seed):
    rng = np.random.default_rng(seed)
    p = rng.gamma(0.5, size=shape)
    return mx.array(np.log(p / p.sum()).astype(np.float32))


def all_views(levels):
    def partitions(items):
        if not items:
            yield []
            return
        first, rest = items[0], items[1:]
        for part in partitions(rest):
            yield [(first,)] + part
            for i in range(len(part)):
                yield part[:i] + [(first,) + part[i]] + part[i + 1 :]

    return [View(tuple(p)) for p in partitions(list(range(levels)))]


def test_draws_follow_the_distribution_and_skip_impossible_codes():
    """Inverse-CDF draws, rows of two distributions at once: frequencies within 5 standard
    errors of the probabilities, and a code of probability 0 (first, middle, last) never drawn."""
    probs = np.array([[0.0, 0.5, 0.0, 0.3, 0.2, 0.0], [0.1, 0.1, 0.6, 0.0, 0.1, 0.1]])
    n = 40000
    logprobs = mx.log(mx.broadcast_to(mx.array(probs)[:, None], (2, n, 6)))
    codes = np.array(draw(logprobs, mx.random.key(0)))
    for row, p in zip(codes, probs):
        freq = np.bincount(row, minlength=6) / n
        assert (freq[p == 0] == 0).all()
        assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12), (freq, p)


def test_view_validation_and_widening():
    view = View.finest(3)
    assert view.size == 3 and view.widened().size == 2 and View.coarsest(3).widened() is None
    with pytest.raises(ValueError):
        View(((0,), (2,)))
    with pytest.raises(ValueError):
        view.merge(1, 1)


def test_independent_joint_has_zero_s_mod_under_every_view():
    rng = np.random.default_rng(0)
    marginals = [rng.dirichlet(np.ones(4)) for _ in range(3)]
    joint = np.einsum("i,j,k->ijk", *marginals)
    log_joint = mx.array(np.log(joint).astype(np.float32))
    for view in all_views(3):
        assert float(s_mod_exact(log_joint, view)) == pytest.approx(0.0, abs=1e-5)
    assert float(phi_exact(log_joint)) == pytest.approx(0.0, abs=1e-5)


def test_perfectly_coupled_levels_give_log_c_and_phi_one():
    c = 5
    joint = np.eye(c) / c
    with np.errstate(divide="ignore"):
        log_joint = mx.array(np.log(joint).astype(np.float32))
    assert float(s_mod_exact(log_joint, View.finest(2))) == pytest.approx(math.log(c), rel=1e-5)
    assert float(s_mod_exact(log_joint, View.coarsest(2))) == pytest.approx(0.0, abs=1e-6)
    assert float(phi_exact(log_joint)) == pytest.approx(1.0, abs=1e-5)
    assert collapse_pressure(math.log(c), View.finest(2)) == pytest.approx(math.log(c) / 2)


def test_widening_never_increases_s_mod():
    log_joint = random_joint((3, 3, 3, 2), seed=1)
    views = all_views(4)
    values = {v: float(s_mod_exact(log_joint, v)) for v in views}
    for view in views:
        for i, j in itertools.combinations(range(view.size), 2):
            assert values[view.merge(i, j)] <= values[view] + 1e-5
    assert 0 <= float(phi_exact(log_joint)) <= 1


def test_monte_carlo_agrees_with_exact():
    log_joint = random_joint((4, 4, 4), seed=2)
    q = TableCodes(log_joint)
    for view in (View.finest(3), View(((0, 2), (1,)))):
        exact = float(s_mod_exact(log_joint, view))
        estimate = s_mod_mc(q, view, samples=4000, inner=256, key=mx.random.key(3))
        assert abs(estimate.s_mod - exact) < 4 * estimate.stderr + 0.02, (exact, estimate)


def test_likelihood_weighting_recovers_a_middle_marginal():
    log_joint = random_joint((3, 3, 3), seed=4)
    q = TableCodes(log_joint)
    z = mx.array([[0, 1, 2], [2, 2, 0]], dtype=mx.int32)
    estimate = block_logprob_mc(q, z, (1,), inner=20000, key=mx.random.key(5))
    exact = marginal_logprobs(log_joint, (1,))[z[:, 1]]
    assert np.allclose(np.array(estimate), np.array(exact), atol=0.05)


def test_exact_s_mod_is_differentiable():
    theta = mx.array(np.random.default_rng(6).standard_normal((3, 3)).astype(np.float32))

    def s_mod(t):
        return s_mod_exact(t - mx.logsumexp(t), View.finest(2))

    grad = mx.grad(s_mod)(theta)
    eps, i, j = 1e-2, 1, 2
    bumped = theta + mx.array(np.eye(3)[i][:, None] * np.eye(3)[j][None, :] * eps, dtype=mx.float32)
    numeric = (float(s_mod(bumped)) - float(s_mod(theta))) / eps
    assert float(grad[i, j]) == pytest.approx(numeric, rel=0.05, abs=1e-3)


def test_monte_carlo_phi_agrees_with_exact():
    for seed in (7, 8):
        log_joint = random_joint((4, 4, 4), seed=seed)
        estimate = phi_mc(TableCodes(log_joint), samples=4000, inner=256, key=mx.random.key(seed))
        assert estimate == pytest.approx(float(phi_exact(log_joint)), abs=0.05)
    coupled = mx.array(np.log(np.eye(4) / 4 + 1e-12).astype(np.float32))
    assert phi_mc(TableCodes(coupled), samples=500, inner=64) == pytest.approx(1.0, abs=0.02)


def test_s_mod_surrogate_is_zero_without_rows_and_carries_a_gradient():
    from meqg_mlx.diamond.ledger import s_mod_surrogate
    from meqg_mlx.vmm.model import VMM, ModelArgs

    mx.random.seed(0)
    model = VMM(
        ModelArgs(
            concept_dim=8,
            d_model=16,
            n_layers=1,
            d_state=8,
            head_dim=8,
            chunk_size=4,
            n_experts=2,
            d_ff=16,
            rvq_levels=2,
            rvq_codes=4,
        )
    )
    view, key = View.finest(2), mx.random.key(1)
    empty = s_mod_surrogate(model.planner, mx.zeros((0, 16)), view, 8, 4, key)
    assert [float(v) for v in empty] == [0.0, 0.0]
    hidden = mx.random.normal((2, 16))

    def surrogate(planner):
        return s_mod_surrogate(planner, hidden, view, 16, 4, key)[1]

    value, _ = s_mod_surrogate(model.planner, hidden, view, 16, 4, key)
    grads = nn.value_and_grad(model.planner, surrogate)(model.planner)[1]
    assert float(value) >= 0 and any(float(mx.abs(g).sum()) > 0 for _, g in nn.utils.tree_flatten(grads))
