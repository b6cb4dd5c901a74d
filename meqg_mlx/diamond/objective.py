"""Delta = S_geo + S_ent + lambda_mod * S_mod (docs/design.md, Objective), each term reported.

S_ent is the learning signal: a next-concept loss that cannot win by predicting the
mean (squared distance plus InfoNCE against in-batch and store negatives, after
Meta's LCM finding that MSE alone regresses to the average continuation), a penalty
wherever a context concept outranks the true next one (copying loses), the planner's
NLL of the true next codes, and the MoE balance loss. S_geo prices
compute: analytic FLOPs and recurrent-state bytes of the model, tool latency,
expert density and (with lambda_kappa) the last measured curvature max(kappa-hat, 0); it is
constant in the weights, so it shifts Delta for the gate
and the ledger of a run without steering gradients.

PyTorch twin of the weight-dependent terms: converters/torch_objective.py (tests/converters/
test_twins.py pairs the names, test_torch_objective.py the values).
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx

from ..config import ObjectiveConfig
from ..kernels.softmax import cross_entropy
from ..vmm.model import ModelArgs


def _row_weights(rows: int, mask: mx.array | None) -> mx.array:
    """Per-row weights summing to 1 over the rows `mask` keeps (all rows when None)."""
    mask = mx.ones((rows,)) if mask is None else mask.astype(mx.float32)
    return mask / mx.maximum(mask.sum(), 1.0)


def next_concept_losses(
    predicted: mx.array,
    target: mx.array,
    negatives: mx.array | None = None,
    temperature: float = 0.05,
    mask: mx.array | None = None,
    excluded: mx.array | None = None,
) -> tuple[mx.array, mx.array]:
    """(squared distance, InfoNCE) for unit rows predicted/target (N, d); negatives (M, d) optional.

    `mask` (N,) drops padded rows from both averages and from the InfoNCE candidates;
    `excluded` (N, N + M) bool drops candidates that are no negatives for a row (copies of
    its target).
    """
    weight = _row_weights(predicted.shape[0], mask)
    distance = (mx.square(predicted - target).sum(-1) * weight).sum()
    candidates = target if negatives is None else mx.concatenate([target, negatives], axis=0)
    logits = predicted @ candidates.T / temperature
    if mask is not None:
        keep = mx.concatenate([mask, mx.ones((candidates.shape[0] - target.shape[0],))])
        logits = logits + mx.log(keep + 1e-9)[None]
    if excluded is not None:
        logits = mx.where(excluded, -1e9, logits)
    per_row = cross_entropy(logits, mx.arange(predicted.shape[0]))
    return distance, (per_row * weight).sum()


def context_penalty(
    predicted: mx.array, target: mx.array, context: mx.array, counts: mx.array, mask: mx.array
) -> mx.array:
    """Mean over kept positions of max(0, max_s cos(x^_t, x_s) - cos(x^_t, x_{t+1})) over the context
    concepts s <= t that `counts` (B, T, T) marks (earlier ones, not copies of the target): how far the
    prediction ranks a context concept above the truth (Ippolito et al. 2020's cure for copying).
    predicted, target, context (B, T, d); mask (B, T)."""
    similarity = mx.where(counts, predicted @ context.swapaxes(-1, -2), -2.0)
    own = (predicted * target).sum(-1)
    penalty = mx.maximum(similarity.max(-1) - own, 0.0)
    weight = _row_weights(penalty.size, mask.reshape(-1))
    return (penalty.reshape(-1) * weight).sum()


def planner_nll(logits: mx.array, codes: mx.array, mask: mx.array | None = None) -> mx.array:
    """Mean over (kept) positions of -log q(z) = sum over levels of the per-level NLL."""
    per_position = cross_entropy(logits, codes).sum(-1)
    return (per_position * _row_weights(per_position.shape[0], mask)).sum()


@dataclass
class ObjectiveTerms:
    delta: mx.array
    s_geo: mx.array | float
    s_ent: mx.array
    s_mod: mx.array
    distance: mx.array
    contrastive: mx.array
    planner: mx.array
    balance: mx.array
    context: mx.array

    def report(self) -> dict[str, float]:
        return {
            "Delta": float(self.delta),
            "S_geo": float(self.s_geo),
            "S_ent": float(self.s_ent),
            "S_mod": float(self.s_mod),
            "distance": float(self.distance),
            "contrastive": float(self.contrastive),
            "planner_nll": float(self.planner),
            "balance": float(self.balance),
            "context": float(self.context),
        }


class Objective:
    def __init__(
        self,
        config: ObjectiveConfig,
        args: ModelArgs,
        balance_weight: float = 0.01,
        contrastive_weight: float = 1.0,
        temperature: float = 0.05,
    ):
        self.config, self.args = config, args
        self.balance_weight, self.contrastive_weight = balance_weight, contrastive_weight
        self.temperature = temperature

    def s_geo(self, tokens, tool_latency_ms: float = 0.0, kappa=0.0):
        """Numbers in, a number out; `tokens` and `kappa` may be arrays (in a compiled graph, where a
        number read from an array would be a host sync), and S_geo is then an array too."""
        c, a = self.config, self.args
        sparsity = 1.0 - a.top_k / a.n_experts
        curvature = mx.maximum(kappa, 0.0) if isinstance(kappa, mx.array) else max(kappa, 0.0)
        return (
            c.lambda_flop * a.flops_per_token() * tokens
            + c.lambda_kv * a.state_bytes()
            + c.lambda_lat * tool_latency_ms
            + c.lambda_sparse * (1.0 - sparsity)
            + c.lambda_kappa * curvature
        )  # curvature costs only where the loss bends up

    def __call__(
        self,
        predicted,
        target,
        negatives,
        planner_logits,
        codes,
        balance,
        s_mod,
        tool_latency_ms: float = 0.0,
        mask: mx.array | None = None,
        excluded: mx.array | None = None,
        kappa: mx.array | float = 0.0,
        context: mx.array | float = 0.0,
    ) -> ObjectiveTerms:
        """Rows are positions (N, ...); `mask` (N,) drops padding; `excluded` see next_concept_losses;
        `context` the batch's `context_penalty`.

        `s_mod` may carry a surrogate gradient. Nothing here reads an array back to the host, so
        the whole objective compiles into the trainer's graph.
        """
        distance, contrastive = next_concept_losses(predicted, target, negatives, self.temperature, mask, excluded)
        planner = planner_nll(planner_logits, codes, mask)
        s_ent = distance + self.contrastive_weight * contrastive + planner + self.balance_weight * balance + context
        tokens = predicted.shape[0] if mask is None else mask.sum()
        s_geo = self.s_geo(tokens, tool_latency_ms, kappa)
        delta = s_geo + s_ent + self.config.lambda_mod * s_mod
        return ObjectiveTerms(delta, s_geo, s_ent, s_mod, distance, contrastive, planner, balance, context)
