"""The activation kernels against float64 references and against the MLX ops they replace,
in value and gradient, on the CPU (they have no GPU backend: MLX's own ops run there)."""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from scipy.special import erf, expit

from meqg_mlx.kernels import kernel_status
from meqg_mlx.kernels.activations import gelu, silu, softplus, swiglu

from .oracle import assert_hvp_matches_central_differences

EXACT = {  # float64 values and derivatives
    silu: (lambda x: x * expit(x), lambda x: expit(x) * (1 + x * (1 - expit(x)))),
    softplus: (lambda x: np.logaddexp(0, x), expit),
    gelu: (
        lambda x: 0.5 * x * (1 + erf(x / math.sqrt(2))),
        lambda x: 0.5 * (1 + erf(x / math.sqrt(2))) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi),
    ),
}
REFERENCE = {silu: nn.silu, softplus: nn.softplus, gelu: nn.gelu}


@pytest.fixture
def kernels_on(cpu):
    assert kernel_status("activations").backend == "cpu"


def sample(shape=(37, 129), scale=6.0, seed=0):
    """Odd sizes (no vector-width multiple) and a wide range; 300k elements split over threads."""
    return mx.random.normal(shape, key=mx.random.key(seed)) * scale


@pytest.mark.parametrize("activation", list(EXACT), ids=lambda f: f.__name__)
@pytest.mark.parametrize("shape", [(37, 129), (1,), (3, 100003)], ids=str)
def test_values_and_gradients_are_float32_accurate(kernels_on, activation, shape):
    x = sample(shape)
    value, derivative = EXACT[activation]
    x64 = np.array(x).astype(np.float64)
    got = np.array(activation(x))
    assert np.abs(got - value(x64)).max() <= 2e-6 * max(1.0, np.abs(value(x64)).max())
    weights = mx.cos(x)  # a different cotangent for every element
    grad = np.array(mx.grad(lambda v: (activation(v) * weights).sum())(x))
    expected = derivative(x64) * np.array(weights)
    assert np.abs(grad - expected).max() <= 2e-6 * max(1.0, np.abs(expected).max())
    assert np.allclose(got, REFERENCE[activation](x), atol=2e-6 * max(1.0, np.abs(got).max()))


def test_swiglu_is_silu_times_the_other_in_value_and_gradient(kernels_on):
    a, b = sample(seed=1), sample(seed=2)
    assert np.allclose(swiglu(a, b), nn.silu(a) * b, rtol=1e-5, atol=1e-5)
    got = mx.grad(lambda a, b: (swiglu(a, b) ** 2).sum(), (0, 1))(a, b)
    want = mx.grad(lambda a, b: ((nn.silu(a) * b) ** 2).sum(), (0, 1))(a, b)
    for g, w in zip(got, want):
        assert np.allclose(g, w, rtol=1e-4, atol=1e-4 * float(mx.abs(w).max()))


@pytest.mark.parametrize("activation", list(EXACT), ids=lambda f: f.__name__)
def test_nan_and_infinities_come_out_as_the_mlx_op_gives_them(kernels_on, activation):
    special = mx.array([math.nan, math.inf, -math.inf, 0.0, -100.0, 100.0])
    got, want = np.array(activation(special)), np.array(REFERENCE[activation](special))
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    assert np.allclose(got[finite], want[finite], atol=1e-6)


def test_hessian_vector_products_match_central_differences_of_the_kernels_gradient(kernels_on):
    x, vector = sample((5, 7), scale=2.0, seed=3), sample((5, 7), scale=1.0, seed=4)
    for activation in EXACT:
        loss = lambda u: (activation(u) ** 2).sum()  # noqa: E731
        assert_hvp_matches_central_differences(loss, (x,), (0,), (vector,))


def test_other_dtypes_come_back_in_their_own(kernels_on):
    x = sample((4, 9)).astype(mx.float16)
    assert silu(x).dtype == mx.float16 and np.allclose(silu(x), nn.silu(x), atol=1e-2)


def test_meqg_kernels_0_runs_the_mlx_op(monkeypatch):
    monkeypatch.setenv("MEQG_KERNELS", "0")
    x = sample((4, 9))
    assert np.array_equal(np.array(gelu(x)), np.array(nn.gelu(x)))


def test_an_idle_expert_has_nothing_to_compute(kernels_on):
    """An expert no token was routed to gets an empty segment (vmm/moe.py)."""
    empty = mx.zeros((0, 16))
    assert swiglu(empty, empty).shape == (0, 16)
    assert mx.grad(lambda a: swiglu(a, a).sum())(empty).shape == (0, 16)
