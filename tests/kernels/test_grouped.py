"""The MoE's grouped expert products (CPU kernel) against the split-at-the-runs reference,
in value, gradient and second derivative, and without a host sync."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from meqg_mlx.kernels import kernel_status
from meqg_mlx.kernels.grouped import grouped_linear, reference
from meqg_mlx.vmm.moe import ExpertsGLU

from .oracle import assert_hvp_matches_central_differences


@pytest.fixture
def kernel_on(cpu):
    assert kernel_status("grouped_matmul").backend == "cpu"


def sorted_experts(rows: int, count: int, idle: tuple = (), seed: int = 0) -> mx.array:
    """Ascending expert indices over `rows`, every expert but the `idle` ones used."""
    used = [e for e in range(count) if e not in idle]
    picks = np.random.default_rng(seed).choice(used, rows)
    picks[: len(used)] = used
    return mx.array(np.sort(picks), dtype=mx.uint32)


# (rows, experts, d_in, d_out, idle experts): odd sizes, an expert with no rows (its weight
# gradient must be zero, not garbage), one expert, one row per expert.
CASES = [(37, 4, 13, 7, ()), (50, 5, 16, 9, (0, 3)), (9, 1, 5, 3, ()), (3, 3, 4, 4, ())]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_values_and_gradients_match_the_reference(kernel_on, case):
    rows, count, d_in, d_out, idle = case
    experts = sorted_experts(rows, count, idle)
    keys = mx.random.split(mx.random.key(rows), 2)
    x, weight = mx.random.normal((rows, d_in), key=keys[0]), mx.random.normal((count, d_out, d_in), key=keys[1])
    assert np.allclose(grouped_linear(x, weight, experts), reference(x, weight, experts), atol=1e-5)

    def loss(linear):
        return lambda a, w: (mx.sin(linear(a, w, experts)) * mx.arange(d_out)).sum()

    got = mx.grad(loss(grouped_linear), (0, 1))(x, weight)
    want = mx.grad(loss(reference), (0, 1))(x, weight)
    for g, w in zip(got, want):
        assert g.shape == w.shape and np.allclose(g, w, atol=1e-4)
    for e in idle:
        assert not np.any(np.array(got[1][e]))


def test_the_kernel_is_right_for_rows_out_of_expert_order(kernel_on):
    """An expert whose rows come in two runs gets both runs' products and their summed gradient."""
    from meqg_mlx.kernels import extension

    experts = mx.array([1, 1, 0, 2, 1, 0], dtype=mx.float32)
    x, weight, g = mx.random.normal((6, 5)), mx.random.normal((3, 4, 5)), mx.random.normal((6, 4))
    per_row = np.array([np.array(weight[int(e)]) for e in experts.tolist()])  # (6, 4, 5)
    assert np.allclose(
        extension().grouped_matmul(x, weight, experts, True), np.einsum("mrc,mc->mr", per_row, x), atol=1e-5
    )
    assert np.allclose(
        extension().grouped_matmul(g, weight, experts, False), np.einsum("mrc,mr->mc", per_row, g), atol=1e-5
    )
    expected = np.zeros((3, 4, 5), dtype=np.float32)
    for row, e in enumerate(experts.tolist()):
        expected[int(e)] += np.outer(np.array(g[row]), np.array(x[row]))
    assert np.allclose(extension().grouped_weight_grad(g, x, experts, 3), expected, atol=1e-5)


def test_hessian_vector_products_match_central_differences_of_the_kernels_gradient(kernel_on):
    experts = sorted_experts(20, 3)
    x, weight = mx.random.normal((20, 6)), mx.random.normal((3, 4, 6))
    loss = lambda x, w: mx.sin(grouped_linear(x, w, experts)).sum()  # noqa: E731
    vector = (mx.random.normal(x.shape), mx.random.normal(weight.shape))
    assert_hvp_matches_central_differences(loss, (x, weight), (0, 1), vector)


def test_the_experts_need_no_host_sync(kernel_on):
    """With the kernel, the MoE's graph compiles whole (a host sync inside mx.compile raises)."""
    experts = ExpertsGLU(8, 12, 4)
    x = mx.random.normal((30, 8))
    indices = mx.argpartition(-mx.random.normal((30, 4)), 1, axis=-1)[:, :2]
    compiled = mx.compile(lambda x, i: experts(x, i, segmented=True))
    assert np.allclose(compiled(x, indices), experts(x, indices, segmented=False), atol=1e-5)
