"""The gate on a small real model: an MLP whose output feeds a tiny planner over 2 levels x 3 codes."""

import math

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from mlx.utils import tree_flatten

from meqg_mlx.config import GateConfig
from meqg_mlx.diamond.gate import GateDecision, GatePolicy, GateSchedule, NullStabilityGate
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


def bounds(gate, params):
    """Each array's trust bound at the gate's current radius (docs/design.md, Gate)."""
    return {k: gate.trust_radius * max(np.linalg.norm(v), 0.1 * np.sqrt(v.size)) for k, v in params.items()}


def test_huge_learning_rate_steps_are_projected_onto_the_trust_region():
    model, optimizer = setup(50.0)
    gate = NullStabilityGate(GateConfig(l_mod=1e9))
    before, _ = snapshot(model, optimizer)
    allowed = bounds(gate, before)
    decision = gate.step(model, optimizer, loss_fn, View.finest(2))
    after, _ = snapshot(model, optimizer)
    assert decision.accepted, decision
    ratios = {k: np.linalg.norm(after[k] - before[k]) / allowed[k] for k in before}
    # the longest step of any array lands on its bound, times the backtracking it needed
    assert max(ratios.values()) <= 1 + 1e-4
    assert max(ratios.values()) >= 0.999 * GateConfig().backtrack_factor ** decision.retries


def radii(gate, model, optimizer, steps, loss=loss_fn):
    """(radius before, decision) per gated step."""
    seen = []
    for _ in range(steps):
        radius = gate.trust_radius
        seen.append((radius, gate.step(model, optimizer, loss, View.finest(2))))
    return seen


def test_the_radius_halves_on_rejection_down_to_its_floor():
    model, optimizer = setup(1e-3)
    gate = NullStabilityGate(GateConfig(alpha=1e6, trust_radius=0.04))  # Armijo cannot hold
    after = [decision.trust_radius for _, decision in radii(gate, model, optimizer, 5)]
    assert after == pytest.approx([0.02, 0.01, 0.005, 0.004, 0.004])  # x0.5, floor 0.1 x the configured 0.04


def test_the_radius_grows_on_projected_passes_up_to_its_cap_and_shrinks_after_backtracking():
    """A radius small enough that every step is projected onto it: each clean pass grows it x1.2
    (capped at 10x the configured radius), a pass after backtracking shrinks it x0.7, a rejection x0.5."""
    model, optimizer = setup(1.0)
    r0 = 1e-4
    gate = NullStabilityGate(GateConfig(trust_radius=r0, alpha=0.0, l_mod=1e9))
    seen = radii(gate, model, optimizer, 30)
    for before, decision in seen:
        if decision.accepted and decision.retries == 0:
            expected = min(before * 1.2, 10 * r0)
        elif decision.accepted:
            expected = max(before * 0.7, 0.1 * r0)
        else:
            expected = max(before * 0.5, 0.1 * r0)
        assert decision.trust_radius == pytest.approx(expected), (before, decision)
    assert sum(d.accepted and d.retries == 0 for _, d in seen) >= 13
    assert max(d.trust_radius for _, d in seen) == pytest.approx(10 * r0)  # reached the cap


class ThreeLevelModel(Model):
    """The planner over 3 levels x 3 codes, so the wider view (levels 0+1 joined, 2 apart) has S_mod > 0 too."""

    def __init__(self):
        super().__init__()
        self.planner = nn.Linear(8, 27)

    def __call__(self, x):
        return self.body(x), self.planner(x).reshape(-1, 3, 3, 3)


def three_level_loss(model, view):
    prediction, logits = model(X)
    log_joint = logits - mx.logsumexp(logits.reshape(logits.shape[0], -1), axis=-1)[:, None, None, None]
    s_mod = mx.mean(mx.stack([s_mod_exact(lj, view) for lj in log_joint[:8]]))
    return ((prediction - Y) ** 2).mean() + 0.5 * s_mod, s_mod


def test_kl_smoothness_alone_can_reject_a_step():
    mx.random.seed(1)
    model = ThreeLevelModel()
    optimizer = optim.AdamW(learning_rate=1e-3)
    optimizer.init(model.trainable_parameters())
    gate = NullStabilityGate(GateConfig(alpha=0.0, l_mod=1e-6, trust_radius=1.0))
    before, before_state = snapshot(model, optimizer)
    decision = gate.step(model, optimizer, three_level_loss, View.finest(3))
    assert not decision.accepted and decision.failed == "kl_smooth" and decision.armijo and decision.trust
    assert decision.view_size == 2 and decision.retries == GateConfig().max_backtracks + 1
    after, after_state = snapshot(model, optimizer)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert all(np.array_equal(before_state[k], after_state[k]) for k in before_state)


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


def decision(accepted: bool, retries: int = 0) -> GateDecision:
    nan = float("nan")
    return GateDecision(accepted, accepted, True, True, True, retries, 1, nan, nan, nan, nan, nan, nan, nan)


def test_the_schedule_doubles_to_its_cap_and_falls_back_after_a_backtrack_or_rejection():
    schedule, checked = GateSchedule(cap=4), []
    outcomes = iter(
        [decision(True)] * 4 + [decision(True, retries=1), decision(False), decision(True)] + [decision(True)] * 9
    )
    for step in range(30):
        if schedule.due(step):
            checked.append(step)
            schedule.checked(step, next(outcomes))
    # clean: gaps 2, 4, 4, 4; a backtrack (step 14): 1; a rejection (15): 1; clean again: 2, 4, 4
    assert checked == [0, 2, 6, 10, 14, 15, 16, 18, 22, 26]
    schedule.check_next(27)
    assert schedule.state() == [4, 27] and schedule.due(27) and not schedule.due(26)  # a non-finite unchecked step
    restored = GateSchedule(cap=4)
    restored.load_state(schedule.state())
    assert restored == schedule
