"""Bidirectional attention for the encoders on the CPU, in the projections' layout (B, L, H, d).

One kernel (metal/cpu/kernels.cpp, CPU-only: no shared body) takes each query row through
its scores, softmax and weighted values, reading q, k and v in place, where MLX's CPU ops
copy q, k, v and the output into the heads-first layout and keep every score block in
memory. The reference is what meqg ran before: query blocks of MLX matmuls around the
softmax kernel. GPUs run MLX's fused scaled_dot_product_attention (encoder/attention.py),
not this.
"""

from __future__ import annotations

from functools import cache

import mlx.core as mx

from . import extension, kernel_function, kernel_status, reference_vjp
from .softmax import softmax

QUERY_BLOCK = 64  # the reference's query rows per block: their scores stay in cache


def attention(q: mx.array, k: mx.array, v: mx.array, scale: float, mask: mx.array) -> mx.array:
    """softmax(q k^T * scale + mask) v for q (B, Lq, H, d), k and v (B, Lk, H, d) -> (B, Lq, H, d);
    `mask` is additive and broadcasts to (B, H, Lq, Lk)."""
    if kernel_status("attention").backend is None:
        return reference(q, k, v, scale, mask)
    mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
    return _attention(float(scale))(q, k, v, mask)[0].astype(q.dtype)


def reference(q: mx.array, k: mx.array, v: mx.array, scale: float, mask: mx.array) -> mx.array:
    keys = k.astype(mx.float32).transpose(0, 2, 3, 1)
    values = v.astype(mx.float32).transpose(0, 2, 1, 3)
    queries = q.astype(mx.float32).transpose(0, 2, 1, 3)
    blocks = []
    for start in range(0, q.shape[1], QUERY_BLOCK):
        rows = slice(start, start + QUERY_BLOCK)
        block_mask = mask if mask.ndim < 2 or mask.shape[-2] == 1 else mask[..., rows, :]
        scores = (queries[:, :, rows] * scale) @ keys + block_mask.astype(mx.float32)
        blocks.append(softmax(scores) @ values)
    return mx.concatenate(blocks, axis=2).transpose(0, 2, 1, 3).astype(q.dtype)


@cache
def _attention(scale: float):
    run = extension().attention

    def by_ops(q, k, v, mask):
        return (reference(q, k, v, scale, mask),)

    return kernel_function(lambda q, k, v, mask: [run(q, k, v, mask, scale)], reference_vjp(by_ops), by_ops)
