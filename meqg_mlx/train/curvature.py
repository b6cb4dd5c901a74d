"""kappa-hat: the largest algebraic eigenvalue of the Hessian of Delta (docs/design.md, Curvature).

Lanczos iteration on Hessian-vector products (reverse-over-reverse: the gradient of
grad . v, since MLX has no jvp for convolutions, which the SSD mixer uses), with full
reorthogonalisation; kappa-hat is the largest eigenvalue of the tridiagonal matrix it
builds. Plain power iteration, used before, converges to the eigenvalue of largest
*magnitude*, which is negative where the loss bends down steeply (a recorded run
plotted -4486); Lanczos' top Ritz value approaches the top eigenvalue from below,
whatever the negative end of the spectrum does.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten


def _dot(a: list, b: list) -> float:
    return float(sum((x * y).sum() for x, y in zip(a, b)))


def lanczos_top_eigenvalue(product: Callable[[list], list], start: list, iterations: int) -> float:
    """Largest Ritz value of the symmetric map `product` (on lists of arrays) after `iterations` steps."""
    norm = _dot(start, start) ** 0.5
    basis = [[v / norm for v in start]]
    alphas, betas = [], []
    for _ in range(iterations):
        q = basis[-1]
        w = product(q)
        alphas.append(_dot(w, q))
        for previous in basis:  # full reorthogonalisation: few steps, so storing the basis is cheap
            overlap = _dot(w, previous)
            w = [x - overlap * p for x, p in zip(w, previous)]
        beta = _dot(w, w) ** 0.5
        if beta <= 1e-6 * max(abs(a) for a in alphas) or len(alphas) == iterations:
            break
        betas.append(beta)
        basis.append([x / beta for x in w])
    tridiagonal = np.diag(alphas) + np.diag(betas[: len(alphas) - 1], 1) + np.diag(betas[: len(alphas) - 1], -1)
    return float(np.linalg.eigvalsh(tridiagonal)[-1])


def top_hessian_eigenvalue(
    model: nn.Module, loss_fn: Callable[[nn.Module], mx.array], iterations: int = 8, seed: int = 0
) -> float:
    """The largest algebraic Hessian eigenvalue after `iterations` Hessian-vector products;
    the model's weights are left as they were."""
    names, arrays = zip(*tree_flatten(model.trainable_parameters()))
    original = list(arrays)

    def loss_of(values):
        model.update(tree_unflatten(list(zip(names, values))))
        return loss_fn(model)

    gradient_of = mx.grad(loss_of)
    hessian_vector = mx.grad(lambda values, vector: sum((g * v).sum() for g, v in zip(gradient_of(values), vector)))
    key = mx.random.key(seed)
    start = [mx.random.normal(a.shape, key=k) for a, k in zip(original, mx.random.split(key, len(original)))]
    try:
        return lanczos_top_eigenvalue(lambda v: hessian_vector(list(original), v), start, iterations)
    finally:
        model.update(tree_unflatten(list(zip(names, original))))
