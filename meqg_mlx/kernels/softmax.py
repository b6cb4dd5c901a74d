"""Softmax, log-sum-exp and cross-entropy along the last axis as CPU kernels (body:
metal/softmax.h, with activations.h's vectorised exp), where MLX's CPU backend takes
~20 ns per exp. Elsewhere, with MEQG_KERNELS=0 or another axis, MLX's own ops run.
"""

from __future__ import annotations

from functools import cache

import mlx.core as mx

from . import extension, kernel_function, kernel_status


def softmax(x: mx.array) -> mx.array:
    if not _on(x):
        return mx.softmax(x, axis=-1)
    return _softmax()(x)[0].astype(x.dtype)


def inverse_cdf(logits: mx.array, uniforms: mx.array) -> mx.array:
    """One index per row of logits (..., C) drawn from their softmax at the row's uniform (..., 1) in
    [0, 1): where MLX's categorical draws C Gumbels (two logs each, one element at a time on its CPU).
    The uniform is scaled to the row's summed probability, so an index of probability 0 is never drawn
    (the first index whose cumulative sum exceeds it is)."""
    total = mx.cumsum(softmax(logits), axis=-1)
    return mx.stop_gradient((total <= uniforms * total[..., -1:]).sum(-1).astype(mx.int32))


def logsumexp(x: mx.array, keepdims: bool = False) -> mx.array:
    if not _on(x):
        return mx.logsumexp(x, axis=-1, keepdims=keepdims)
    out = _logsumexp()(x)[0].astype(x.dtype)
    return out[..., None] if keepdims else out


def cross_entropy(logits: mx.array, targets: mx.array) -> mx.array:
    """Per-row cross-entropy of class indices `targets` under `logits` (..., C), as
    nn.losses.cross_entropy(logits, targets, reduction="none")."""
    return logsumexp(logits) - mx.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]


def _on(x: mx.array) -> bool:
    return x.ndim > 0 and x.shape[-1] > 0 and kernel_status("softmax").backend is not None


@cache
def _softmax():
    rows, op = extension().rows, extension().RowOp
    return kernel_function(
        lambda x: [rows(op.softmax, [x])],
        lambda inputs, outputs, cotangents: [rows(op.softmax_grad, [outputs[0], cotangents[0]])],
        lambda x: (mx.softmax(x, axis=-1),),
    )


@cache
def _logsumexp():
    rows, op = extension().rows, extension().RowOp
    return kernel_function(
        lambda x: [rows(op.logsumexp, [x])],
        lambda inputs, outputs, cotangents: [cotangents[0][..., None] * rows(op.softmax, [inputs[0]])],
        lambda x: (mx.logsumexp(x, axis=-1),),
    )
