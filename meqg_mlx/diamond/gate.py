"""The Null-Stability Gate: an optimizer step is kept only if it is locally stable.

On the same batch, a candidate step s is accepted iff
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
from mlx.utils import tree_flatten, tree_map, tree_unflatten

from ..config import GateConfig
from .view import View

TRUST_FLOOR_RMS = 0.1  # an array counts as having RMS >= 0.1, so zero-initialised biases can move
LossFn = Callable[[nn.Module, View], tuple[mx.array, mx.array]]  # model, view -> (Delta, S_mod)


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


def all_finite(tree) -> bool:
    """Whether every array in `tree` is finite, in one sync (one per array costs more than a step)."""
    return bool(mx.stack([mx.isfinite(v).all() for _, v in tree_flatten(tree)]).all())


def copy_tree(tree):
    """New containers, same (immutable) arrays: restoring them is bit-exact."""
    return tree_map(lambda x: x, tree)


class NullStabilityGate:
    def __init__(self, config: GateConfig | None = None):
        self.config = config or GateConfig()
        self.trust_radius = self.config.trust_radius

    def step(
        self, model: nn.Module, optimizer, loss_fn: LossFn, view: View, grad_clip: float | None = None
    ) -> GateDecision:
        """Take one optimizer step through the gate; returns the decision (weights updated iff accepted)."""
        cfg = self.config
        params = copy_tree(model.parameters())
        opt_state = copy_tree(optimizer.state)
        (delta, s_mod), grads = nn.value_and_grad(model, lambda m: loss_fn(m, view))(model)
        mx.eval(delta, s_mod, grads)
        optimizer.update(model, optim.clip_grad_norm(grads, grad_clip)[0] if grad_clip else grads)
        proposed = model.trainable_parameters()
        before = dict(tree_flatten(params))
        step = {k: v - before[k] for k, v in tree_flatten(proposed)}
        flat_grads = dict(tree_flatten(grads))
        slope = sum((flat_grads[k] * s).sum() for k, s in step.items())
        sizes = {k: mx.linalg.norm(s.reshape(-1)) for k, s in step.items()}
        norms = {k: mx.linalg.norm(before[k].reshape(-1)) for k in step}
        mx.eval(slope, sizes, norms)  # one sync for all of them: per-array syncs cost more than the step
        slope, sizes = float(slope), {k: float(v) for k, v in sizes.items()}
        allowed = {
            k: self.trust_radius * max(float(norms[k]), TRUST_FLOOR_RMS * math.sqrt(before[k].size)) for k in step
        }
        scale = _trust_scale(sizes, allowed)
        projected = scale < 1.0
        proposal = (params, before, step, sizes, allowed)
        candidate = self._evaluate(model, proposal, scale, loss_fn, view, float(delta), float(s_mod), slope)
        retries = 0
        while not candidate.accepted and candidate.finite and retries < cfg.max_backtracks:
            retries += 1
            scale *= cfg.backtrack_factor
            candidate = self._evaluate(model, proposal, scale, loss_fn, view, float(delta), float(s_mod), slope)
        wider = view.widened()
        if not candidate.accepted and wider is not None and candidate.finite:
            retries += 1
            model.update(params)
            delta_w, s_mod_w = loss_fn(model, wider)
            candidate = self._evaluate(model, proposal, scale, loss_fn, wider, float(delta_w), float(s_mod_w), slope)
        candidate.retries = retries
        if not candidate.accepted:
            model.update(params)
            optimizer.state = opt_state
            self.trust_radius = max(self.trust_radius * 0.5, 0.1 * cfg.trust_radius)
        elif retries:
            self.trust_radius = max(self.trust_radius * 0.7, 0.1 * cfg.trust_radius)
        elif projected:  # the region was binding and the projected step passed: widen the region
            self.trust_radius = min(self.trust_radius * 1.2, 10 * cfg.trust_radius)
        candidate.trust_radius = self.trust_radius
        return candidate

    def _evaluate(self, model, proposal, scale, loss_fn, view, delta, s_mod, slope) -> GateDecision:
        """Put theta + scale * s into the model and check every criterion on it."""
        cfg = self.config
        params, before, step, sizes, allowed = proposal
        candidate = {k: before[k] + scale * s for k, s in step.items()}
        model.update(_unflatten_like(params, candidate))
        step_norm = scale * math.sqrt(sum(n * n for n in sizes.values()))
        finite = all_finite(candidate) and math.isfinite(step_norm)
        trust = finite and all(scale * sizes[k] <= allowed[k] * (1 + 1e-5) for k in step)
        delta_new, s_mod_new = (float(v) for v in loss_fn(model, view)) if finite else (math.nan, math.nan)
        finite = finite and math.isfinite(delta_new) and math.isfinite(s_mod_new)
        armijo = finite and delta_new <= delta + cfg.alpha * scale * slope
        kl_smooth = finite and abs(s_mod_new - s_mod) <= cfg.l_mod * step_norm
        accepted = finite and trust and armijo and kl_smooth
        return GateDecision(
            accepted,
            armijo,
            trust,
            kl_smooth,
            finite,
            0,
            view.size,
            s_mod_new / view.size if finite else math.nan,
            self.trust_radius,
            step_norm,
            delta,
            delta_new,
            s_mod,
            s_mod_new,
        )


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
