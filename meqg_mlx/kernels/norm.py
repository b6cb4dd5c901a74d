"""BERT's post-norm residual, LayerNorm(x + h + bias), as one CPU pass (body: metal/norm.h).

On the CPU, MLX's LayerNorm is a chain of ops (mean, centre, square, mean, scale) and a
Linear's bias is copied into its output before the matmul; the kernel takes the sublayer's
projection without its bias and adds bias and residual while it normalises. Elsewhere, with
MEQG_KERNELS=0 or without the extension, the reference runs: `mx.fast.layer_norm` of the sum.
"""

from __future__ import annotations

from functools import cache

import mlx.core as mx

from . import extension, kernel_function, kernel_status, reference_vjp


def residual_layer_norm(
    x: mx.array, h: mx.array, bias: mx.array, weight: mx.array, offset: mx.array, eps: float
) -> mx.array:
    """LayerNorm(x + h + bias) * weight + offset over the last axis."""
    if kernel_status("residual_norm").backend is None:
        return reference(x, h, bias, weight, offset, eps)
    return _residual_norm(float(eps))(x, h, bias, weight, offset)[0].astype(mx.result_type(x, h))


def reference(x, h, bias, weight, offset, eps: float) -> mx.array:
    return mx.fast.layer_norm(x + h + bias, weight, offset, eps)


@cache
def _residual_norm(eps: float):
    run = extension().residual_norm

    def by_ops(*inputs):
        return (reference(*inputs, eps),)

    return kernel_function(lambda *inputs: [run(*inputs, eps)], reference_vjp(by_ops), by_ops)
