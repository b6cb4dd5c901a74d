"""BERT's residual LayerNorm kernel against mx.fast.layer_norm of the sum: value and gradient,
odd widths, enough rows for threads, NaN."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from meqg_mlx.kernels import kernel_status
from meqg_mlx.kernels.norm import reference, residual_layer_norm


@pytest.fixture
def kernels_on(cpu):
    assert kernel_status("residual_norm").backend == "cpu"


def inputs(shape, seed=0):
    n = shape[-1]
    x, h = (mx.random.normal(shape, key=mx.random.key(seed + i)) * 3 + i for i in (0, 1))
    bias, weight, offset = (mx.random.normal((n,), key=mx.random.key(seed + i)) for i in (2, 3, 4))
    return x, h, bias, weight, offset


def close(a, b, tolerance=2e-5):
    return float(mx.max(mx.abs(a - b))) < tolerance


@pytest.mark.parametrize("shape", [(1, 1), (3, 7, 5), (64, 41, 384), (9, 1536)], ids=str)
def test_values_match_layer_norm_of_the_sum(kernels_on, shape):
    """Forward only: the kernel's backward is the reference's own VJP (`reference_vjp`), nothing to compare."""
    args = inputs(shape)
    assert close(residual_layer_norm(*args, 1e-12), reference(*args, 1e-12))


def test_a_nan_poisons_its_row_only(kernels_on):
    x, h, bias, weight, offset = inputs((3, 8), seed=5)
    got = np.array(residual_layer_norm(x.at[1, 2].add(math.nan), h, bias, weight, offset, 1e-12))
    assert np.isnan(got[1]).all() and np.isfinite(got[[0, 2]]).all()


def test_kernels_off_runs_the_reference(monkeypatch):
    monkeypatch.setenv("MEQG_KERNELS", "0")
    assert kernel_status("residual_norm").backend is None
    args = inputs((4, 6), seed=7)
    assert close(residual_layer_norm(*args, 1e-12), reference(*args, 1e-12))
