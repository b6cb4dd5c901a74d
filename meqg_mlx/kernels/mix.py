"""The next-concept head's context mixture as CPU kernels (body: metal/mix.h).

y[b, t] = sum_j a[b, t, j] x[b, t + L - 1 - j]: each step's weighted sum of its last L
concepts, over a window that holds the L - 1 concepts before the first step. MLX's ops run
it as L shifted multiply-adds of strided slices and differentiate it into L strided
reductions; the kernel makes one pass per step each way. The window's gradient is its own
kernel, so training (where the concepts are data) never computes it. GPUs run the MLX ops.
"""

from __future__ import annotations

from functools import cache

import mlx.core as mx

from ..errors import InputError
from . import extension, kernel_function, kernel_status


def context_mix(window: mx.array, weights: mx.array) -> mx.array:
    """window (b, T + L - 1, D), weights (b, T, L) -> (b, T, D)."""
    if window.ndim != 3 or weights.ndim != 3:
        raise InputError(f"context mix: window and weights must be 3-d, got {window.ndim}-d and {weights.ndim}-d")
    b, steps, lags = weights.shape
    if window.shape[:2] != (b, steps + lags - 1):
        raise InputError(
            f"context mix: weights {weights.shape} need a window ({b}, {steps + lags - 1}, D), got {window.shape}"
        )
    if kernel_status("context_mix").backend is None:
        return reference(window, weights)
    return _mix()(window, weights)[0].astype(mx.result_type(window, weights))


def reference(window: mx.array, weights: mx.array) -> mx.array:
    """The MLX ops: a sum of shifted windows (not a (b, T, L, D) stack, a quarter less time)."""
    steps, lags = weights.shape[1], weights.shape[2]
    out = weights[..., :1] * window[:, lags - 1 : lags - 1 + steps]
    for j in range(1, lags):
        out = out + weights[..., j : j + 1] * window[:, lags - 1 - j : lags - 1 - j + steps]
    return out


@cache
def _mix():
    kernels = extension()
    run, op = kernels.context_mix, kernels.MixOp

    def backward(inputs, outputs, cotangents):
        window, weights = inputs
        return run(op.window, window, weights, cotangents[0]), run(op.weights, window, weights, cotangents[0])

    return kernel_function(
        lambda window, weights: [run(op.forward, window, weights)], backward, lambda *inputs: (reference(*inputs),)
    )
