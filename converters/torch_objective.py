"""The objective's weight-dependent terms in PyTorch, term for term as `meqg_mlx.diamond.objective`
(whose docstrings say what each term is and why), for the PyTorch trainer (`converters/train.py`).

A rank computes its own rows of the global batch, so every function takes `weight`: the rows'
global weights (a kept position's 1 / the kept positions of the whole batch, 0 for padding).
Summed over ranks, each term is the MLX one. S_geo, the terms' weights and Delta's sum stay the
MLX `Objective`'s; the MoE balance term needs the ranks' summed expert load and is formed in the
trainer. tests/converters/test_torch_objective.py evaluates both files on the same batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EXCLUDED = -1e9  # the logit of a candidate that is no negative for a row (as MLX's)
NOT_IN_CONTEXT = -2.0  # below any cosine: a context slot that does not count


def next_concept_losses(
    predicted: torch.Tensor,
    target: torch.Tensor,
    candidates: torch.Tensor,
    temperature: float,
    weight: torch.Tensor,
    log_keep: torch.Tensor,
    excluded: torch.Tensor,
    own: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(squared distance, InfoNCE) of this rank's rows (n, d). `candidates` (N + M, d) are every target
    of the global batch, then the negatives; `log_keep` (1, N + M) drops padded targets as candidates;
    `excluded` (n, N + M) the candidates that are no negatives for a row; `own` (n,) each row's column."""
    distance = (((predicted - target) ** 2).sum(-1) * weight).sum()
    logits = (predicted @ candidates.T / temperature + log_keep).masked_fill(excluded, EXCLUDED)
    contrastive = (F.cross_entropy(logits, own, reduction="none") * weight).sum()
    return distance, contrastive


def context_penalty(
    predicted: torch.Tensor, target: torch.Tensor, context: torch.Tensor, counts: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """max(0, max_s cos(x^_t, x_s) - cos(x^_t, x_{t+1})) over the context concepts `counts` (b, T, T)
    marks, weighted; predicted, target, context (b, T, d)."""
    similarity = (predicted @ context.transpose(-1, -2)).masked_fill(~counts, NOT_IN_CONTEXT)
    own = (predicted * target).sum(-1)
    return ((similarity.amax(-1) - own).clamp(min=0.0).reshape(-1) * weight).sum()


def planner_nll(logits: torch.Tensor, codes: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """-log q(z) of the true codes (b, T, levels), summed over levels, weighted; logits (b, T, levels, K)."""
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.reshape(-1), reduction="none")
    return (nll.reshape(-1, codes.shape[-1]).sum(-1) * weight).sum()
