"""The encoders' attention in the projections' layout against MLX's own scaled_dot_product_attention."""

import mlx.core as mx
import numpy as np
import pytest

from meqg_mlx.encoder.attention import attention


@pytest.mark.parametrize("kernels", ["1", "0"], ids=["kernel", "MEQG_KERNELS=0"])
def test_attention_equals_sdpa_with_padding_and_position_bias(monkeypatch, kernels):
    monkeypatch.setenv("MEQG_KERNELS", kernels)
    B, H, L, d = 3, 4, 77, 16
    q, k, v = (mx.random.normal((B, L, H, d), key=mx.random.key(i)) for i in range(3))
    padding = mx.array(
        np.where(np.arange(L)[None, :] < np.array([L, 40, 7])[:, None], 0.0, -1e9)[:, None, None, :], mx.float32
    )
    mask = padding + mx.random.normal((1, H, L, L), key=mx.random.key(9))
    ours = attention(q, k, v, 0.25, mask)
    heads_first = (a.transpose(0, 2, 1, 3) for a in (q, k, v))
    reference = mx.fast.scaled_dot_product_attention(*heads_first, scale=0.25, mask=mask).transpose(0, 2, 1, 3)
    assert float(mx.max(mx.abs(ours - reference))) < 1e-5
