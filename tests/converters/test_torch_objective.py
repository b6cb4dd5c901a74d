"""converters/torch_objective.py against meqg_mlx.diamond.objective on the same batch: every term equal.

One rank holding the whole batch computes what MLX computes; two ranks holding alternate rows add
up to it (their `weight` is the global one)."""

import mlx.core as mx
import numpy as np
import pytest
import torch

from meqg_converters.torch_objective import context_penalty, next_concept_losses, planner_nll
from meqg_mlx.diamond import objective

B, T, D, M, LEVELS, K = 3, 5, 16, 7, 2, 6


def unit(rng, *shape):
    x = rng.normal(size=shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    mask = (rng.random((B, T)) > 0.25).astype(np.float32)
    mask[0, 0] = 1.0
    n = B * T
    return {
        "predicted": unit(rng, B, T, D),
        "target": unit(rng, B, T, D),
        "negatives": unit(rng, M, D),
        "context": unit(rng, B, T, D),
        "counts": np.tril(rng.random((B, T, T)) > 0.3),
        "mask": mask,
        "excluded": (rng.random((n, n + M)) > 0.9) & ~np.eye(n, n + M, dtype=bool),
        "logits": rng.normal(size=(B, T, LEVELS, K)).astype(np.float32),
        "codes": rng.integers(0, K, (B, T, LEVELS)),
    }


def torch_terms(b, rows):
    """The three terms as the PyTorch trainer computes them on `rows` of the batch."""
    t = {k: torch.from_numpy(np.asarray(v)) for k, v in b.items()}
    n = B * T
    positions = (rows[:, None] * T + np.arange(T)).reshape(-1)
    weight = t["mask"][rows].reshape(-1) / max(float(b["mask"].sum()), 1.0)
    candidates = torch.cat([t["target"].reshape(n, D), t["negatives"]])
    keep = torch.cat([t["mask"].reshape(-1), torch.ones(M)])
    predicted = t["predicted"][rows]
    distance, contrastive = next_concept_losses(
        predicted.reshape(-1, D),
        t["target"][rows].reshape(-1, D),
        candidates,
        0.05,
        weight,
        torch.log(keep + 1e-9)[None],
        t["excluded"][positions],
        torch.as_tensor(positions),
    )
    context = context_penalty(predicted, t["target"][rows], t["context"][rows], t["counts"][rows], weight)
    planner = planner_nll(t["logits"][rows], t["codes"][rows], weight)
    return np.array([float(distance), float(contrastive), float(context), float(planner)])


def mlx_terms(b):
    a = {k: mx.array(np.asarray(v)) for k, v in b.items()}
    n, mask = B * T, a["mask"].reshape(-1)
    distance, contrastive = objective.next_concept_losses(
        a["predicted"].reshape(n, D), a["target"].reshape(n, D), a["negatives"], 0.05, mask, a["excluded"]
    )
    context = objective.context_penalty(a["predicted"], a["target"], a["context"], a["counts"], a["mask"])
    planner = objective.planner_nll(a["logits"].reshape(n, LEVELS, K), a["codes"].reshape(n, LEVELS), mask)
    return np.array([float(distance), float(contrastive), float(context), float(planner)])


def test_one_rank_computes_every_term_as_mlx_does(batch):
    np.testing.assert_allclose(torch_terms(batch, np.arange(B)), mlx_terms(batch), rtol=1e-5, atol=1e-6)


def test_two_ranks_shares_add_up_to_the_mlx_terms(batch):
    shares = torch_terms(batch, np.arange(0, B, 2)) + torch_terms(batch, np.arange(1, B, 2))
    np.testing.assert_allclose(shares, mlx_terms(batch), rtol=1e-5, atol=1e-6)
