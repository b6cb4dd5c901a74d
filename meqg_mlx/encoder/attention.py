"""Bidirectional attention for the encoders, in the projections' layout (B, L, H, d): MLX's
fused `scaled_dot_product_attention` on Metal/CUDA; on the CPU meqg's attention kernel
(`meqg_mlx.kernels.attention`), since MLX's CPU sdpa materialises every score and takes
exp one element at a time (~20 ns each: 40% of MiniLM's time on 128-token batches).
"""

from __future__ import annotations

import mlx.core as mx

from ..kernels import attention as cpu_attention


def padding_bias(attention_mask: mx.array, dtype: mx.Dtype) -> mx.array:
    """(B, 1, 1, L) additive mask: 0 for real tokens, -1e9 for padding (mask 0), so padded keys get no weight."""
    return mx.where(attention_mask[:, None, None, :].astype(mx.bool_), 0.0, -1e9).astype(dtype)


def attention(q: mx.array, k: mx.array, v: mx.array, scale: float, mask: mx.array) -> mx.array:
    """softmax(q k^T * scale + mask) v for q (B, Lq, H, d), k and v (B, Lk, H, d) -> (B, Lq, H, d);
    `mask` is additive and broadcasts to (B, H, Lq, Lk)."""
    if mx.default_device() != mx.cpu:
        heads_first = (q.transpose(0, 2, 1, 3), k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3))
        return mx.fast.scaled_dot_product_attention(*heads_first, scale=scale, mask=mask).transpose(0, 2, 1, 3)
    return cpu_attention.attention(q, k, v, scale, mask)
