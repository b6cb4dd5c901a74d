"""The row kernels against MLX's softmax, logsumexp and cross-entropy, value and gradient."""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from meqg_mlx.kernels import kernel_status
from meqg_mlx.kernels.softmax import cross_entropy, logsumexp, softmax


@pytest.fixture
def kernels_on(cpu):
    assert kernel_status("softmax").backend == "cpu"


def close(a, b, tolerance=2e-6):
    return np.allclose(np.array(a), np.array(b), rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("shape", [(37, 129), (5,), (2, 3, 1), (600, 600)], ids=str)
def test_values_and_gradients_match_mlx(kernels_on, shape):
    """Odd row lengths, a single row, rows of one, and enough rows to split over threads."""
    x = mx.random.normal(shape, key=mx.random.key(0)) * 8
    weights = mx.random.normal(shape, key=mx.random.key(1))
    assert close(softmax(x), mx.softmax(x, axis=-1))
    assert close(logsumexp(x), mx.logsumexp(x, axis=-1), 2e-6 * 8)
    assert close(logsumexp(x, keepdims=True), mx.logsumexp(x, axis=-1, keepdims=True), 2e-6 * 8)
    grad = mx.grad(lambda v: (softmax(v) * weights).sum())(x)
    assert close(grad, mx.grad(lambda v: (mx.softmax(v, axis=-1) * weights).sum())(x))
    row_weights = weights[..., 0]
    grad = mx.grad(lambda v: (logsumexp(v) * row_weights).sum())(x)
    assert close(grad, mx.grad(lambda v: (mx.logsumexp(v, axis=-1) * row_weights).sum())(x))


def test_cross_entropy_is_mlxs_with_masked_candidates(kernels_on):
    """As the objective calls it: contrastive logits with excluded candidates at -1e9."""
    logits = mx.random.normal((64, 200), key=mx.random.key(2)) * 20
    logits = mx.where(mx.random.uniform(shape=(64, 200), key=mx.random.key(3)) < 0.2, -1e9, logits)
    targets = mx.arange(64)
    logits = logits.at[mx.arange(64), targets].add(0.0 - logits[mx.arange(64), targets] + 3.0)
    want = nn.losses.cross_entropy(logits, targets, reduction="none")
    assert close(cross_entropy(logits, targets), want, 1e-5)
    grad = mx.grad(lambda v: cross_entropy(v, targets).sum())(logits)
    assert close(grad, mx.grad(lambda v: nn.losses.cross_entropy(v, targets).sum())(logits), 1e-5)


def test_a_nan_poisons_its_row_only(kernels_on):
    x = mx.random.normal((3, 6), key=mx.random.key(4)).at[1, 2].add(math.nan)
    got = np.array(softmax(x))
    assert np.isnan(got[1]).all() and np.isfinite(got[[0, 2]]).all()
    assert np.isnan(np.array(logsumexp(x))[1])


def test_kernels_off_runs_mlxs_softmax(monkeypatch):
    x = mx.random.normal((4, 9), key=mx.random.key(5))
    monkeypatch.setenv("MEQG_KERNELS", "0")
    assert np.array_equal(np.array(softmax(x)), np.array(mx.softmax(x, axis=-1)))
