"""The encoders' CPU attention kernel against its reference (query blocks of MLX ops) and
against MLX's scaled_dot_product_attention: value and gradient, padding and per-query
biases, odd sizes, NaN."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from meqg_mlx.kernels import kernel_status
from meqg_mlx.kernels.attention import QUERY_BLOCK, attention, reference


@pytest.fixture
def kernels_on(cpu):
    assert kernel_status("attention").backend == "cpu"


def projections(B, Lq, Lk, H, d, seed=0):
    q = mx.random.normal((B, Lq, H, d), key=mx.random.key(seed))
    k, v = (mx.random.normal((B, Lk, H, d), key=mx.random.key(seed + i)) for i in (1, 2))
    return q, k, v


def padding(lengths, L):
    real = np.arange(L)[None, :] < np.array(lengths)[:, None]
    return mx.array(np.where(real, 0.0, -1e9)[:, None, None, :], mx.float32)


def sdpa(q, k, v, scale, mask):
    heads_first = (a.transpose(0, 2, 1, 3) for a in (q, k, v))
    return mx.fast.scaled_dot_product_attention(*heads_first, scale=scale, mask=mask).transpose(0, 2, 1, 3)


def close(a, b, tolerance=1e-5):
    return float(mx.max(mx.abs(a - b))) < tolerance


@pytest.mark.parametrize("per_query", [False, True], ids=["padding", "padding+position bias"])
def test_kernel_equals_sdpa_and_the_reference(kernels_on, per_query):
    """More (batch, head) blocks than threads, query rows past one reference block, one row left at 7 keys."""
    B, H, L, d = 3, 4, QUERY_BLOCK * 2 + 13, 16
    q, k, v = projections(B, L, L, H, d)
    mask = padding([L, 40, 7], L)
    if per_query:
        mask = mask + mx.random.normal((1, H, L, L), key=mx.random.key(9))
    ours = attention(q, k, v, 0.25, mask)
    assert ours.shape == q.shape
    assert close(ours, sdpa(q, k, v, 0.25, mask))
    assert close(ours, reference(q, k, v, 0.25, mask))


@pytest.mark.parametrize("B,Lq,Lk,H,d", [(1, 1, 1, 1, 1), (2, 5, 3, 3, 7), (1, 9, 33, 2, 40)], ids=str)
def test_odd_sizes(kernels_on, B, Lq, Lk, H, d):
    """Forward only: the kernel's backward is the reference's own VJP (`reference_vjp`), nothing to compare."""
    q, k, v = projections(B, Lq, Lk, H, d, seed=3)
    mask = mx.random.normal((B, 1, Lq, Lk), key=mx.random.key(7))
    assert close(attention(q, k, v, d**-0.5, mask), reference(q, k, v, d**-0.5, mask))


def test_a_nan_key_poisons_its_heads_rows_only(kernels_on):
    q, k, v = projections(2, 4, 4, 2, 8, seed=5)
    k = k.at[0, 1, 1, 3].add(math.nan)  # batch 0, key 1, head 1: every query's score of it
    got = np.array(attention(q, k, v, 0.3, mx.zeros((1, 1, 1, 4))))
    assert np.isnan(got[0, :, 1]).all() and np.isfinite(got[0, :, 0]).all() and np.isfinite(got[1]).all()


def test_kernels_off_runs_the_reference(monkeypatch):
    monkeypatch.setenv("MEQG_KERNELS", "0")
    q, k, v = projections(2, 3, 5, 2, 4)
    mask = mx.zeros((2, 1, 1, 5))
    assert kernel_status("attention").backend is None
    assert close(attention(q, k, v, 0.5, mask), sdpa(q, k, v, 0.5, mask))
