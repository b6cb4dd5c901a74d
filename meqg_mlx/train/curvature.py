"""kappa-hat: the top eigenvalue of the Hessian of Delta, by power iteration on
Hessian-vector products (reverse-over-reverse: the gradient of grad . v, since
MLX has no jvp for convolutions, which the SSD mixer uses)."""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten


def top_hessian_eigenvalue(model: nn.Module, loss_fn: Callable[[nn.Module], mx.array], iterations: int = 8,
                           seed: int = 0) -> float:
    """Rayleigh quotient after `iterations` power steps; the model's weights are left as they were."""
    names, arrays = zip(*tree_flatten(model.trainable_parameters()))
    original = list(arrays)

    def loss_of(values):
        model.update(tree_unflatten(list(zip(names, values))))
        return loss_fn(model)

    gradient_of = mx.grad(loss_of)
    hessian_vector = mx.grad(lambda values, vector: sum((g * v).sum() for g, v in zip(gradient_of(values), vector)))
    key = mx.random.key(seed)
    vector = [mx.random.normal(a.shape, key=k) for a, k in zip(original, mx.random.split(key, len(original)))]
    eigenvalue = 0.0
    try:
        for _ in range(iterations):
            norm = mx.sqrt(sum((v * v).sum() for v in vector))
            vector = [v / norm for v in vector]
            product = hessian_vector(list(original), vector)
            eigenvalue = float(sum((v * h).sum() for v, h in zip(vector, product)))
            vector = product
    finally:
        model.update(tree_unflatten(list(zip(names, original))))
    return eigenvalue
