"""The modal ledger's Monte-Carlo S_mod and its score-function surrogate in PyTorch, for the PyTorch trainer.

The same estimator as `meqg_mlx.diamond.ledger.s_mod_surrogate` (docstrings there): ancestral
samples of the planner's codes with their exact log q, each block marginal by likelihood
weighting. Random numbers come from a torch.Generator per position, seeded from the step's key
and the position's index in the global batch, so any split of a batch over ranks draws the same.
"""

from __future__ import annotations

import torch

from meqg_mlx.diamond.view import View


def _categorical(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]


def sample_codes(planner, h: torch.Tensor, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Ancestral samples (n, K) of q(. | h) and their exact log q (n,)."""
    hidden = h.expand(n, -1)
    prefix = torch.zeros(n, 0, dtype=torch.long, device=h.device)
    logq = h.new_zeros(n)
    for level in range(planner.levels):
        logits = planner.level_logits(hidden, prefix, level).log_softmax(-1)
        z = _categorical(logits, generator)
        logq = logq + logits.gather(1, z[:, None])[:, 0]
        prefix = torch.cat([prefix, z[:, None]], 1)
    return prefix, logq


def block_logprob_mc(
    planner, h: torch.Tensor, z: torch.Tensor, block: tuple[int, ...], inner: int, generator: torch.Generator
) -> torch.Tensor:
    """Likelihood-weighting estimate of log q_b(z_b) for each row of z (n, K); levels after the
    block's last one do not change the weights, so they are not sampled."""
    n = z.shape[0]
    fixed = z.repeat_interleave(inner, 0)
    hidden = h.expand(n * inner, -1)
    prefix = torch.zeros(n * inner, 0, dtype=torch.long, device=h.device)
    logw = h.new_zeros(n * inner)
    for level in range(max(block) + 1):
        logits = planner.level_logits(hidden, prefix, level).log_softmax(-1)
        if level in block:
            choice = fixed[:, level]
            logw = logw + logits.gather(1, choice[:, None])[:, 0]
        else:
            choice = _categorical(logits, generator)
        prefix = torch.cat([prefix, choice[:, None]], 1)
    return torch.logsumexp(logw.reshape(n, inner), 1) - torch.log(torch.tensor(float(inner)))


def s_mod_surrogate(
    planner, hidden: torch.Tensor, seeds: list[int], view: View, samples: int, inner: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of `hidden` (P, d), seeded by `seeds` (P,): the S_mod estimates (P,) and surrogates (P,)
    whose gradient is the score-function estimate of S_mod's (value 0 in expectation)."""
    values, surrogates = [], []
    for h, seed in zip(hidden, seeds):
        generator = torch.Generator(device=h.device).manual_seed(seed)
        fixed_h = h.detach()[None]
        with torch.no_grad():
            z, logq = sample_codes(planner, fixed_h, samples, generator)
            blocks = sum(block_logprob_mc(planner, fixed_h, z, block, inner, generator) for block in view.blocks)
        f = logq - blocks
        logits = planner(h[None].expand(z.shape[0], -1), z).log_softmax(-1)
        logq_grad = logits.gather(-1, z[..., None])[..., 0].sum(-1)
        values.append(f.mean().clamp(min=0.0))
        surrogates.append(((f - f.mean()) * logq_grad).mean())
    if not values:
        return hidden.new_zeros(0), hidden.new_zeros(0)
    return torch.stack(values), torch.stack(surrogates)
