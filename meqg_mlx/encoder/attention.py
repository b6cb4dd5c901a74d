"""Bidirectional attention for the encoders: MLX's fused `scaled_dot_product_attention` on
Metal/CUDA; on the CPU a query-blocked softmax with a fused polynomial exp.

MLX's CPU sdpa materialises every score and evaluates exp one element at a time (~20 ns
each): on 128-token MiniLM batches it was 40% of the encoder's time. Blocks of 64 query
rows keep the scores in cache, and exp as a polynomial on x/32 squared five times fuses
under mx.compile: 265-370 ms -> 136 ms per layer (64 x 128 tokens), outputs within 1.2e-6.
"""

from __future__ import annotations

from functools import partial

import mlx.core as mx

QUERY_BLOCK = 64
EXP_TAYLOR = tuple(1.0 / f for f in (40320, 5040, 720, 120, 24, 6, 2, 1, 1))  # e^r, degree 8, r in [-0.625, 0]


@partial(mx.compile, shapeless=True)
def exp_nonpositive(x: mx.array) -> mx.array:
    """exp(x) for x <= 0 in float32, relative error ~1e-6; below -20 (weight < 2e-9) it stays e^-20."""
    r = mx.maximum(x, -20.0) * (1.0 / 32)
    p = EXP_TAYLOR[0]
    for c in EXP_TAYLOR[1:]:
        p = p * r + c
    for _ in range(5):
        p = p * p
    return p


def padding_bias(attention_mask: mx.array, dtype: mx.Dtype) -> mx.array:
    """(B, 1, 1, L) additive mask: 0 for real tokens, -1e9 for padding (mask 0), so padded keys get no weight."""
    return mx.where(attention_mask[:, None, None, :].astype(mx.bool_), 0.0, -1e9).astype(dtype)


def attention(q: mx.array, k: mx.array, v: mx.array, scale: float, mask: mx.array) -> mx.array:
    """softmax(q k^T * scale + mask) v for (B, H, L, d) inputs; `mask` broadcasts to (B, H, L, L)."""
    if mx.default_device() != mx.cpu:
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)
    keys, values = k.astype(mx.float32).transpose(0, 1, 3, 2), v.astype(mx.float32)
    blocks = []
    for start in range(0, q.shape[2], QUERY_BLOCK):
        rows = slice(start, start + QUERY_BLOCK)
        block_mask = mask if mask.shape[-2] == 1 else mask[..., rows, :]
        scores = (q[:, :, rows].astype(mx.float32) * scale) @ keys + block_mask.astype(mx.float32)
        weights = exp_nonpositive(scores - scores.max(axis=-1, keepdims=True))
        blocks.append((weights @ values) / weights.sum(axis=-1, keepdims=True))
    return mx.concatenate(blocks, axis=2).astype(q.dtype)
