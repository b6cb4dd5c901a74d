"""The next-concept head's context-mixture kernel against its MLX-ops reference, in value and
in the gradients of the window and the weights."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from meqg_mlx.errors import InputError
from meqg_mlx.kernels import kernel_status
from meqg_mlx.kernels.mix import context_mix, reference

from .oracle import assert_hvp_matches_central_differences, close, weighted_sum

# (batch, steps, columns, lags): odd column counts (no vector-width multiple), one decoding
# step, a single lag, more lags than steps, and enough work that the extension splits the
# steps and window rows over threads. Outputs are not zeroed first, so a row no thread wrote
# would show.
SHAPES = [(2, 5, 7, 3), (3, 17, 33, 8), (1, 1, 9, 8), (2, 6, 5, 1), (2, 3, 11, 6), (16, 32, 385, 8)]


def inputs(b, steps, columns, lags, seed=0):
    keys = iter(mx.random.split(mx.random.key(seed), 2))
    window = mx.random.normal((b, steps + lags - 1, columns), key=next(keys))
    weights = mx.softmax(mx.random.normal((b, steps, lags), key=next(keys)) * 2, axis=-1)
    return window, weights


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_values_and_gradients_match_the_reference(cpu, shape):
    assert kernel_status("context_mix").backend == "cpu"
    args = inputs(*shape)
    assert close(context_mix(*args), reference(*args))
    got = mx.grad(weighted_sum(context_mix), (0, 1))(*args)
    want = mx.grad(weighted_sum(reference), (0, 1))(*args)
    for name, g, w in zip(("window", "weights"), got, want):
        assert g.shape == w.shape, name
        assert close(g, w, 5e-5), name


def test_a_compiled_gradient_of_the_weights_alone_matches(cpu):
    """As in training: the window is data, so only the weights' gradient is asked for."""
    window, weights = inputs(4, 9, 24, 8)
    got = mx.compile(mx.grad(lambda a: weighted_sum(context_mix)(window, a)))(weights)
    assert close(got, mx.grad(lambda a: weighted_sum(reference)(window, a))(weights), 5e-5)


def test_hessian_vector_products_match_central_differences_of_the_kernels_gradient(cpu):
    """Curvature's Hessian-vector products of Delta go through the head (reverse over reverse)."""
    window, weights = inputs(2, 4, 6, 3)
    vector = tuple(mx.random.normal(v.shape, key=mx.random.key(k)) for v, k in ((window, 4), (weights, 5)))
    assert_hvp_matches_central_differences(weighted_sum(context_mix), (window, weights), (0, 1), vector)


def test_non_finite_inputs_reach_the_outputs_they_feed(cpu):
    window, weights = inputs(1, 6, 5, 3)
    window[0, 4, 2] = float("nan")  # window row 4 is lag 2, 1, 0 of steps 2, 3, 4
    got, want = np.array(context_mix(window, weights)), np.array(reference(window, weights))
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.isnan(got).sum() == 3
    assert np.allclose(got[~np.isnan(got)], want[~np.isnan(want)], atol=1e-5)


@pytest.mark.parametrize(
    "window, weights",
    [((2, 5, 4), (2, 3, 2)), ((2, 4, 4), (1, 3, 2)), ((4, 4), (1, 3, 2)), ((2, 4, 4), (2, 3))],
    ids=["window too long", "batch differs", "2-d window", "2-d weights"],
)
def test_mismatched_shapes_are_refused_in_one_line(cpu, window, weights):
    with pytest.raises(InputError, match="context mix") as error:
        context_mix(mx.zeros(window), mx.zeros(weights))
    assert "\n" not in str(error.value)


def test_with_kernels_off_the_reference_runs(monkeypatch):
    monkeypatch.setenv("MEQG_KERNELS", "0")
    assert kernel_status("context_mix").backend is None
    window, weights = inputs(2, 5, 7, 3)
    assert mx.array_equal(context_mix(window, weights), reference(window, weights))
