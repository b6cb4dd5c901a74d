"""The gate on a small real model: an MLP whose output feeds a tiny planner over 2 levels x 3 codes."""

import math

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten

from meqg_mlx.config import GateConfig
from meqg_mlx.diamond.gate import GatePolicy, NullStabilityGate
from meqg_mlx.diamond.ledger import s_mod_exact
from meqg_mlx.diamond.view import View

mx.random.seed(0)
X = mx.random.normal((64, 8))
Y = mx.sin(X @ mx.random.normal((8, 4)))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 4))
        self.planner = nn.Linear(8, 9)

    def __call__(self, x):
        return self.body(x), self.planner(x).reshape(-1, 3, 3)


def loss_fn(model, view, lambda_mod=0.5):
    prediction, logits = model(X)
    log_joint = logits - mx.logsumexp(logits.reshape(logits.shape[0], -1), axis=-1)[:, None, None]
    s_mod = mx.mean(mx.stack([s_mod_exact(lj, view) for lj in log_joint[:8]]))
    return ((prediction - Y) ** 2).mean() + lambda_mod * s_mod, s_mod


def snapshot(model, optimizer):
    return (
        {k: np.array(v) for k, v in tree_flatten(model.parameters())},
        {k: np.array(v) for k, v in tree_flatten(optimizer.state)},
    )


def setup(lr):
    mx.random.seed(1)
    model = Model()
    optimizer = optim.AdamW(learning_rate=lr)
    optimizer.init(model.trainable_parameters())
    return model, optimizer


def test_reasonable_steps_are_accepted_and_lower_delta():
    model, optimizer = setup(1e-3)
    gate = NullStabilityGate(GateConfig(trust_radius=0.05))
    first = float(loss_fn(model, View.finest(2))[0])
    decisions = [gate.step(model, optimizer, loss_fn, View.finest(2)) for _ in range(30)]
    assert sum(d.accepted for d in decisions) >= 25
    assert float(loss_fn(model, View.finest(2))[0]) < first
    assert all(d.delta_new <= d.delta + 1e-6 for d in decisions if d.accepted)


def test_huge_learning_rate_steps_are_projected_onto_the_trust_region():
    model, optimizer = setup(50.0)
    gate = NullStabilityGate()
    before, _ = snapshot(model, optimizer)
    decision = gate.step(model, optimizer, loss_fn, View.finest(2))
    after, _ = snapshot(model, optimizer)
    for key in before:
        allowed = gate.config.trust_radius * 10 * max(np.linalg.norm(before[key]), 0.1 * np.sqrt(before[key].size))
        assert np.linalg.norm(after[key] - before[key]) <= allowed * 1.001
    assert decision.accepted == (decision.delta_new <= decision.delta)


def test_a_rejected_step_restores_weights_and_optimizer_state_exactly():
    model, optimizer = setup(1e-3)
    gate = NullStabilityGate(GateConfig(alpha=1e6))  # Armijo cannot hold: every step is rejected
    NullStabilityGate().step(model, optimizer, loss_fn, View.finest(2))  # optimizer state now non-trivial
    before_params, before_state = snapshot(model, optimizer)
    decision = gate.step(model, optimizer, loss_fn, View.finest(2))
    assert not decision.accepted and decision.failed == "armijo"
    after_params, after_state = snapshot(model, optimizer)
    assert before_params.keys() == after_params.keys()
    assert all(np.array_equal(before_params[k], after_params[k]) for k in before_params)
    assert before_state.keys() == after_state.keys()
    for key in before_state:
        assert np.array_equal(before_state[key], after_state[key]), key
    assert decision.retries == GateConfig().max_backtracks + 1  # backtracks, then the wider view


def test_non_finite_candidates_are_always_rejected():
    model, optimizer = setup(1e-3)
    optimizer.learning_rate = mx.array(float("inf"))
    before, _ = snapshot(model, optimizer)
    decision = NullStabilityGate(GateConfig(trust_radius=1e9, alpha=0.0, l_mod=1e9)).step(
        model, optimizer, loss_fn, View.finest(2)
    )
    assert not decision.accepted and not decision.finite and decision.failed == "finite"
    after, _ = snapshot(model, optimizer)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_gated_training_stays_finite_where_ungated_diverges():
    model, optimizer = setup(20.0)
    gate = NullStabilityGate()
    for _ in range(10):
        gate.step(model, optimizer, loss_fn, View.finest(2))
    assert all(np.isfinite(np.array(v)).all() for _, v in tree_flatten(model.parameters()))
    gated = float(loss_fn(model, View.finest(2))[0])

    model, optimizer = setup(20.0)
    step = nn.value_and_grad(model, lambda m: loss_fn(m, View.finest(2))[0])
    for _ in range(10):
        _, grads = step(model)
        optimizer.update(model, grads)
    ungated = float(loss_fn(model, View.finest(2))[0])
    assert math.isfinite(gated)
    assert not math.isfinite(ungated) or ungated > 10 * gated


def test_backtracking_rescues_an_overlong_step():
    model, optimizer = setup(0.05)
    gate = NullStabilityGate(GateConfig(trust_radius=10.0, l_mod=1e6, max_backtracks=6))
    decisions = [gate.step(model, optimizer, loss_fn, View.finest(2)) for _ in range(20)]
    assert any(d.accepted and d.retries > 0 for d in decisions)


def test_the_policy_decides_on_plain_numbers_and_backtracks():
    """What a PyTorch trainer or an episode calls: no model, just the numbers it measured."""
    policy = GatePolicy(GateConfig(alpha=0.1, l_mod=5.0, max_backtracks=3, backtrack_factor=0.5))
    common = dict(finite=True, within_trust=True, s_mod=0.1, s_mod_new=0.1, step_norm=1.0, view_size=2, trust_radius=1)
    assert policy.decide(delta=1.0, delta_new=0.95, allowance=-0.1, **common).accepted
    worse = policy.decide(delta=1.0, delta_new=1.2, allowance=-0.1, **common)
    assert not worse.accepted and worse.failed == "armijo"
    assert policy.decide(delta=None, delta_new=99.0, allowance=0.0, **common).armijo  # no reference yet
    jumpy = {**common, "s_mod_new": 9.0}
    assert policy.decide(delta=1.0, delta_new=0.5, allowance=0.0, **jumpy).failed == "kl_smooth"
    nan = policy.decide(delta=1.0, delta_new=float("nan"), allowance=0.0, **common)
    assert nan.failed == "finite" and nan.trust  # the step itself was inside the region

    # Delta(scale) = 1 - scale + 2 scale^2 with slope -1: Armijo holds once scale <= 0.45
    seen = []

    def evaluate(scale):
        seen.append(scale)
        return policy.decide(delta=1.0, delta_new=1 - scale + 2 * scale**2, allowance=-scale, **common)

    decision, scale = policy.backtrack(evaluate)
    assert decision.accepted and seen == [1.0, 0.5, 0.25] and scale == 0.25 and decision.retries == 2
    never, _ = policy.backtrack(lambda sc: policy.decide(delta=1.0, delta_new=2.0, allowance=-sc, **common))
    assert not never.accepted and never.retries == 3
