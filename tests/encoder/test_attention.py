"""The CPU blocked attention against MLX's own scaled_dot_product_attention."""

import mlx.core as mx
import numpy as np
import pytest

from meqg_mlx.encoder.attention import QUERY_BLOCK, attention


@pytest.mark.parametrize("per_query", [False, True])
def test_blocked_attention_equals_sdpa_with_padding_and_position_bias(per_query):
    B, H, L, d = 3, 4, QUERY_BLOCK * 2 + 13, 16
    q, k, v = (mx.random.normal((B, H, L, d), key=mx.random.key(i)) for i in range(3))
    lengths = [L, 40, 7]
    padding = mx.array(
        np.where(np.arange(L)[None, :] < np.array(lengths)[:, None], 0.0, -1e9)[:, None, None, :], mx.float32
    )
    mask = padding + mx.random.normal((1, H, L, L), key=mx.random.key(9)) if per_query else padding
    ours = attention(q, k, v, 0.25, mask)
    reference = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.25, mask=mask)
    assert float(mx.max(mx.abs(ours - reference))) < 1e-5
