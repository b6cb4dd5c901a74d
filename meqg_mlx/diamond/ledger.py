"""The modal ledger: how much a distribution over code tuples loses when a view
factorizes it.

    S_mod(q, A) = KL(q || Pi_A q) = sum_b H(q_b) - H(q)  >= 0

Exact by enumerating the joint (differentiable: a table of log-probabilities in,
an mx scalar out); Monte-Carlo for autoregressive models whose joint is too big:
H(q) from exact log q of samples, each block marginal q_b(z_b) by likelihood
weighting (levels outside the block are sampled given the fixed block values,
those inside contribute their conditional probability), which is unbiased for q_b.
Phi = S_mod at the finest view / (sum_k H(q_k) - max_k H(q_k)), in [0, 1].

PyTorch twin of the surrogate: converters/torch_ledger.py (tests/converters/test_twins.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import mlx.core as mx

from ..kernels.softmax import cross_entropy, inverse_cdf
from .view import View


class AutoregressiveCodes(Protocol):
    """q(z) = prod_k q(z_k | z_<k) over `levels` levels of `codes` codes each."""

    levels: int
    codes: int

    def conditional_logprobs(self, prefix: mx.array) -> mx.array:
        """prefix (N, k) ints -> (N, codes) log q(z_k | prefix); a q holding several distributions
        takes (P, N, k) -> (P, N, codes)."""
        ...


def _entropy(logp: mx.array, axes: tuple[int, ...] | None = None) -> mx.array:
    p = mx.exp(logp)
    return -mx.sum(mx.where(p > 0, p * logp, 0.0), axis=axes)


def marginal_logprobs(log_joint: mx.array, block: tuple[int, ...]) -> mx.array:
    """Log of q's marginal over the levels in `block` (a table of log-probabilities)."""
    others = tuple(k for k in range(log_joint.ndim) if k not in block)
    return mx.logsumexp(log_joint, axis=others) if others else log_joint


def s_mod_exact(log_joint: mx.array, view: View) -> mx.array:
    """KL(q || Pi_A q) for a joint given as a (C,)*K table of log-probabilities."""
    if view.levels != log_joint.ndim:
        raise ValueError(f"view covers {view.levels} levels, the joint has {log_joint.ndim}")
    block_entropy = sum(_entropy(marginal_logprobs(log_joint, block)) for block in view.blocks)
    return mx.maximum(block_entropy - _entropy(log_joint), 0.0)


def phi_exact(log_joint: mx.array) -> mx.array:
    levels = log_joint.ndim
    marginals = mx.stack([_entropy(marginal_logprobs(log_joint, (k,))) for k in range(levels)])
    scale = marginals.sum() - marginals.max()
    s_mod = s_mod_exact(log_joint, View.finest(levels))
    return mx.where(scale > 1e-9, mx.minimum(s_mod / mx.maximum(scale, 1e-9), 1.0), 0.0)


def draw(logprobs: mx.array, key: mx.array) -> mx.array:
    """One code per row of log-probabilities (..., C), by the inverse CDF at a uniform per row."""
    return inverse_cdf(logprobs, mx.random.uniform(shape=(*logprobs.shape[:-1], 1), key=key))


def sample_codes(
    q: AutoregressiveCodes, n: int, key: mx.array, batch: tuple[int, ...] = ()
) -> tuple[mx.array, mx.array]:
    """Ancestral samples (*batch, n, K) and their exact log q (*batch, n); `batch` is the shape of a
    q that holds one distribution per leading index (a planner at several positions)."""
    prefix = mx.zeros((*batch, n, 0), dtype=mx.int32)
    logq = mx.zeros((*batch, n))
    for k, subkey in enumerate(mx.random.split(key, q.levels)):
        logits = q.conditional_logprobs(prefix)
        z = draw(logits, subkey)
        logq = logq + mx.take_along_axis(logits, z[..., None], axis=-1)[..., 0]
        prefix = mx.concatenate([prefix, z[..., None]], axis=-1)
    return prefix, logq


def block_logprob_mc(
    q: AutoregressiveCodes, z: mx.array, block: tuple[int, ...], inner: int, key: mx.array
) -> mx.array:
    """Likelihood-weighting estimate of log q_b(z_b) for each row of z (..., n, K).

    Levels after the block's last one do not change the weights, so they are not sampled."""
    *batch, n, _ = z.shape
    fixed = mx.repeat(z, inner, axis=-2)
    prefix = mx.zeros((*batch, n * inner, 0), dtype=mx.int32)
    logw = mx.zeros((*batch, n * inner))
    for k, subkey in zip(range(max(block) + 1), mx.random.split(key, q.levels)):
        logits = q.conditional_logprobs(prefix)
        if k in block:
            choice = fixed[..., k]
            logw = logw + mx.take_along_axis(logits, choice[..., None], axis=-1)[..., 0]
        else:
            choice = draw(logits, subkey)
        prefix = mx.concatenate([prefix, choice[..., None]], axis=-1)
    return mx.logsumexp(logw.reshape(*batch, n, inner), axis=-1) - mx.log(float(inner))


@dataclass
class LedgerEstimate:
    s_mod: float
    stderr: float


def s_mod_mc(
    q: AutoregressiveCodes, view: View, samples: int = 512, inner: int = 64, key: mx.array | None = None
) -> LedgerEstimate:
    """Monte-Carlo S_mod = E_q[log q(z) - sum_b log q_b(z_b)] with its standard error."""
    key = mx.random.key(0) if key is None else key
    outer_key, *block_keys = mx.random.split(key, 1 + view.size)
    z, logq = sample_codes(q, samples, outer_key)
    terms = logq - sum(block_logprob_mc(q, z, block, inner, k) for block, k in zip(view.blocks, block_keys))
    mean = float(terms.mean())
    stderr = float(mx.sqrt(mx.var(terms) / samples))
    return LedgerEstimate(max(mean, 0.0), stderr)


def phi_mc(q: AutoregressiveCodes, samples: int = 256, inner: int = 32, key: mx.array | None = None) -> float:
    """Phi by Monte Carlo: H(q) from exact log q of samples, each H(q_k) by likelihood weighting."""
    key = mx.random.key(0) if key is None else key
    outer_key, *level_keys = mx.random.split(key, 1 + q.levels)
    z, logq = sample_codes(q, samples, outer_key)
    marginals = [-float(block_logprob_mc(q, z, (k,), inner, lk).mean()) for k, lk in zip(range(q.levels), level_keys)]
    scale = sum(marginals) - max(marginals)
    if scale <= 1e-9:
        return 0.0
    return min(max((sum(marginals) + float(logq.mean())) / scale, 0.0), 1.0)


def collapse_pressure(s_mod: float, view: View) -> float:
    return s_mod / view.size


class Planner(Protocol):
    """What the score-function surrogate needs of a planner head: its distribution at h, and logits of codes."""

    def distribution(self, hidden: mx.array) -> AutoregressiveCodes: ...

    def __call__(self, hidden: mx.array, codes: mx.array) -> mx.array: ...


def s_mod_surrogate(
    planner: Planner,
    hidden: mx.array,
    view: View,
    samples: int,
    inner: int,
    key: mx.array,
    surrogate: bool = True,
) -> tuple[mx.array, mx.array]:
    """Monte-Carlo S_mod of the planner at each row of `hidden` (P, d), averaged, and a surrogate whose
    gradient is the score-function estimate of S_mod's (its value has mean 0; add it minus its
    stop_gradient). With no rows both are 0; without `surrogate` (values only) the second is 0."""
    if hidden.shape[0] == 0:
        return mx.array(0.0), mx.array(0.0)
    dist = planner.distribution(mx.stop_gradient(hidden))  # one distribution per row, sampled together
    k_sample, *k_blocks = mx.random.split(key, 1 + view.size)
    z, logq = sample_codes(dist, samples, k_sample, batch=hidden.shape[:1])
    blocks = sum(block_logprob_mc(dist, z, b, inner, k) for b, k in zip(view.blocks, k_blocks))
    f = mx.stop_gradient(logq - blocks)  # (P, samples)
    value = mx.maximum(f.mean(-1), 0.0).mean()
    if not surrogate:
        return value, mx.array(0.0)
    logits = planner(mx.broadcast_to(hidden[:, None], (*z.shape[:-1], hidden.shape[-1])), z)
    logq_grad = -cross_entropy(logits, z).sum(-1)
    return value, ((f - f.mean(-1, keepdims=True)) * logq_grad).mean()
