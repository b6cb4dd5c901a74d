"""The Null-Stability Gate: a step is kept only if it is locally stable (docs/design.md, Gate).

`GatePolicy` holds the criteria and the backtrack loop on plain numbers the caller
measured, so training (`NullStabilityGate`, below), episodes (episode/engine.py) and a
PyTorch trainer decide the same way and report the same `GateDecision`.

In training, on the same batch, a candidate step s is accepted iff
  finite:     every parameter of theta + s is finite;
  Armijo:     Delta(theta + s) <= Delta(theta) + alpha * grad(Delta) . s;
  trust:      for every parameter array, ||s_p|| <= r * max(||theta_p||, 0.1 * sqrt(size_p)), r adaptive;
  KL-smooth:  |S_mod(theta + s) - S_mod(theta)| <= L_mod * ||s||.
A step longer than the trust region is first scaled onto its boundary; on failure
it backtracks (s <- backtrack_factor * s, up to max_backtracks times), then tries
the next wider view, then rejects. The radius grows when a projected step passes
at once, shrinks after backtracking, and halves on rejection. A rejected step restores the
parameters and the optimizer state to the very arrays they held before.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_map, tree_unflatten

from ..config import GateConfig
from ..kernels.gate import gate_reductions
from .view import View

TRUST_FLOOR_RMS = 0.1  # an array counts as having RMS >= 0.1, so zero-initialised biases can move
LossFn = Callable[[nn.Module, View], tuple[mx.array, mx.array]]  # model, view -> (Delta, S_mod)
GradFn = Callable[[View], tuple[tuple[mx.array, mx.array], dict]]  # view -> ((Delta, S_mod), grads)


@dataclass
class GateDecision:
    accepted: bool
    armijo: bool
    trust: bool
    kl_smooth: bool
    finite: bool
    retries: int
    view_size: int
    collapse_pressure: float
    trust_radius: float
    step_norm: float
    delta: float
    delta_new: float
    s_mod: float
    s_mod_new: float

    @property
    def failed(self) -> str | None:
        for name in ("finite", "trust", "armijo", "kl_smooth"):
            if not getattr(self, name):
                return name
        return None


@dataclass
class GateSchedule:
    """Which steps the gate checks (both trainers' one rule): the gap between checks doubles after each
    clean accept, up to `cap` (gate.check_interval), and falls back to 1 after any backtrack or
    rejection; a step whose unchecked update went non-finite has the next step checked."""

    cap: int
    gap: int = 1
    next_check: int = 0

    def due(self, step: int) -> bool:
        """Whether step `step` (counted from 0 before it is taken) is checked."""
        return step >= self.next_check

    def checked(self, step: int, decision: GateDecision) -> None:
        clean = decision.accepted and decision.retries == 0
        self.gap = min(2 * self.gap, self.cap) if clean else 1
        self.next_check = step + self.gap

    def check_next(self, step: int) -> None:
        self.next_check = step

    def state(self) -> list[int]:
        """What a checkpoint keeps (`gate_schedule` in state.json)."""
        return [self.gap, self.next_check]

    def load_state(self, state: list[int]) -> None:
        self.gap, self.next_check = state


def all_finite(tree) -> bool:
    """Whether every array in `tree` is finite, in one sync (one per array costs more than a step)."""
    return bool(mx.stack([mx.isfinite(v).all() for _, v in tree_flatten(tree)]).all())


def copy_tree(tree):
    """New containers, same (immutable) arrays: restoring them is bit-exact."""
    return tree_map(lambda x: x, tree)


class GatePolicy:
    """The gate's criteria and backtrack loop, on numbers: nothing here touches a model."""

    def __init__(self, config: GateConfig | None = None):
        self.config = config or GateConfig()

    def decide(
        self,
        *,
        finite: bool,
        within_trust: bool,
        delta: float | None,
        delta_new: float,
        s_mod: float | None,
        s_mod_new: float,
        step_norm: float,
        allowance: float,
        view_size: int,
        trust_radius: float,
    ) -> GateDecision:
        """One candidate. `finite`: its parameters (or vector) are finite; `within_trust`: each part of the
        step is inside its trust region; `allowance`: Armijo's slope term before alpha (grad . s in training,
        the step length in episodes); `delta`/`s_mod` None: no reference yet, that criterion holds."""
        cfg = self.config
        trust = finite and within_trust
        finite = finite and math.isfinite(delta_new) and math.isfinite(s_mod_new) and math.isfinite(step_norm)
        armijo = finite and (delta is None or delta_new <= delta + cfg.alpha * allowance)
        kl_smooth = finite and (s_mod is None or abs(s_mod_new - s_mod) <= cfg.l_mod * step_norm)
        return GateDecision(
            accepted=finite and trust and armijo and kl_smooth,
            armijo=armijo,
            trust=trust,
            kl_smooth=kl_smooth,
            finite=finite,
            retries=0,
            view_size=view_size,
            collapse_pressure=s_mod_new / view_size if finite else math.nan,
            trust_radius=trust_radius,
            step_norm=step_norm,
            delta=math.nan if delta is None else delta,
            delta_new=delta_new,
            s_mod=math.nan if s_mod is None else s_mod,
            s_mod_new=s_mod_new,
        )

    def backtrack(self, evaluate: Callable[[float], GateDecision], scale: float = 1.0) -> tuple[GateDecision, float]:
        """`evaluate(scale)` until a candidate passes, one is not finite, or `max_backtracks` scalings by
        `backtrack_factor` are spent; the last decision (its `retries` set) and its scale."""
        cfg = self.config
        decision, retries = evaluate(scale), 0
        while not decision.accepted and decision.finite and retries < cfg.max_backtracks:
            retries += 1
            scale *= cfg.backtrack_factor
            decision = evaluate(scale)
        decision.retries = retries
        return decision, scale


class NullStabilityGate:
    """The policy applied to an optimizer step, with an adaptive trust radius.

    `judge` holds the whole procedure on numbers and three callbacks, so the MLX trainer
    (`step`, below) and the PyTorch one (meqg_converters.train) take the same decisions.
    """

    def __init__(self, config: GateConfig | None = None):
        self.config = config or GateConfig()
        self.policy = GatePolicy(self.config)
        self.trust_radius = self.config.trust_radius

    def step(
        self,
        model: nn.Module,
        optimizer,
        loss_fn: LossFn,
        view: View,
        grad_clip: float | None = None,
        value_and_grad: GradFn | None = None,
        update: Callable[[dict], None] | None = None,
    ) -> GateDecision:
        """Take one optimizer step through the gate; returns the decision (weights updated iff accepted).

        `value_and_grad(view)` gives the step's gradient at the model's weights (by default
        nn.value_and_grad of `loss_fn`) and `update(grads)` takes the optimizer's step (by default
        `optimizer.update` of the gradient clipped to `grad_clip`); the trainer passes compiled graphs."""
        params = copy_tree(model.parameters())
        opt_state = copy_tree(optimizer.state)
        if value_and_grad is None:
            (delta, s_mod), grads = nn.value_and_grad(model, lambda m: loss_fn(m, view))(model)
        else:
            (delta, s_mod), grads = value_and_grad(view)
        if update is None:
            optimizer.update(model, optim.clip_grad_norm(grads, grad_clip)[0] if grad_clip else grads)
        else:
            update(grads)
        proposed = dict(tree_flatten(model.trainable_parameters()))
        before, flat_grads = dict(tree_flatten(params)), dict(tree_flatten(grads))
        names = list(proposed)
        # the gradient, the optimizer step and one pass over all arrays in one sync: a sync per array
        # costs more than the step, and one before the update left the core idle while it was queued
        reductions = np.array(
            gate_reductions([before[k] for k in names], [proposed[k] for k in names], [flat_grads[k] for k in names])
        ).astype(np.float64)
        sizes = dict(zip(names, np.sqrt(reductions[:, 0])))
        norms = dict(zip(names, np.sqrt(reductions[:, 1])))
        slope = reductions[:, 2].sum()
        # every candidate lies between theta and the proposed weights, so it is finite iff they are
        finite_step = reductions[:, 3].sum() == 0 and bool(np.isfinite(reductions[:, 0]).all())
        step = {k: proposed[k] - before[k] for k in names}

        def candidate(scale: float, at: View) -> tuple[bool, float, float]:
            # the whole step is the optimizer's weights as they are (two ops per array fewer)
            values = proposed if scale == 1.0 else {k: before[k] + scale * s for k, s in step.items()}
            model.update(_unflatten_like(params, values))
            if not finite_step:
                return False, math.nan, math.nan
            delta_new, s_mod_new = loss_fn(model, at)
            return True, float(delta_new), float(s_mod_new)

        def reference(at: View) -> tuple[float, float]:
            model.update(params)
            delta_at, s_mod_at = loss_fn(model, at)
            return float(delta_at), float(s_mod_at)

        def restore() -> None:
            model.update(params)
            optimizer.state = opt_state

        return self.judge(
            {k: float(v) for k, v in sizes.items()},
            {k: (float(norms[k]), before[k].size) for k in names},
            float(slope),
            (float(delta), float(s_mod)),
            view,
            candidate,
            reference,
            restore,
        )

    def judge(
        self,
        sizes: dict[str, float],
        norms: dict[str, tuple[float, int]],
        slope: float,
        start: tuple[float, float],
        view: View,
        candidate: Callable[[float, View], tuple[bool, float, float]],
        reference: Callable[[View], tuple[float, float]],
        restore: Callable[[], None],
    ) -> GateDecision:
        """Decide on a proposed step s, already taken by the optimizer.

        `sizes`: ||s_p|| per parameter array; `norms`: (||theta_p||, size_p) before the step; `slope`:
        grad(Delta) . s; `start`: (Delta, S_mod) at theta. `candidate(scale, view)` puts theta + scale * s
        in the model and returns (finite, Delta, S_mod) there; `reference(view)` puts theta back and returns
        (Delta, S_mod) at theta under `view`; `restore()` puts back theta and the optimizer state.
        """
        cfg = self.config
        allowed = {
            k: self.trust_radius * max(norm, TRUST_FLOOR_RMS * math.sqrt(size)) for k, (norm, size) in norms.items()
        }
        scale = _trust_scale(sizes, allowed)
        projected = scale < 1.0

        def evaluate(scale: float, at: View, delta: float, s_mod: float) -> GateDecision:
            step_norm = scale * math.sqrt(sum(n * n for n in sizes.values()))
            finite, delta_new, s_mod_new = candidate(scale, at)
            return self.policy.decide(
                finite=finite and math.isfinite(step_norm),
                within_trust=all(scale * sizes[k] <= allowed[k] * (1 + 1e-5) for k in sizes),
                delta=delta,
                delta_new=delta_new,
                s_mod=s_mod,
                s_mod_new=s_mod_new,
                step_norm=step_norm,
                allowance=scale * slope,
                view_size=at.size,
                trust_radius=self.trust_radius,
            )

        decision, scale = self.policy.backtrack(lambda sc: evaluate(sc, view, *start), scale)
        retries = decision.retries
        wider = view.widened()
        if not decision.accepted and wider is not None and decision.finite:
            retries += 1
            decision = evaluate(scale, wider, *reference(wider))
        decision.retries = retries
        if not decision.accepted:
            restore()
            self.trust_radius = max(self.trust_radius * 0.5, 0.1 * cfg.trust_radius)
        elif retries:
            self.trust_radius = max(self.trust_radius * 0.7, 0.1 * cfg.trust_radius)
        elif projected:  # the region was binding and the projected step passed: widen the region
            self.trust_radius = min(self.trust_radius * 1.2, 10 * cfg.trust_radius)
        decision.trust_radius = self.trust_radius
        return decision


def _trust_scale(sizes: dict, allowed: dict) -> float:
    """The largest scale <= 1 that puts every array's step inside the trust region.

    A non-finite step keeps scale 1, so its candidate is reported non-finite and rejected.
    """
    if not all(math.isfinite(n) for n in sizes.values()):
        return 1.0
    return min([1.0] + [allowed[k] / n for k, n in sizes.items() if n > 0])


def _unflatten_like(params, flat: dict):
    """Replace the leaves of `params` named in `flat` (dotted keys), keep the rest."""
    merged = dict(tree_flatten(params))
    merged.update(flat)
    return tree_unflatten(list(merged.items()))
