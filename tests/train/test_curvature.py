import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from meqg_mlx.train.curvature import top_hessian_eigenvalue


class Quadratic(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.x = mx.ones((n,))


def test_power_iteration_finds_the_top_eigenvalue_of_a_quadratic():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    eigenvalues = np.array([9.0, 3.0, 2.0, 1.0, 0.5, 0.1])
    a = mx.array((q * eigenvalues) @ q.T, dtype=mx.float32)
    model = Quadratic(6)
    before = np.array(model.x)
    kappa = top_hessian_eigenvalue(model, lambda m: 0.5 * m.x @ a @ m.x, iterations=40)
    assert kappa == pytest.approx(9.0, rel=1e-3)
    assert np.array_equal(np.array(model.x), before)


def test_curvature_of_a_real_network_is_finite_and_weights_are_restored():
    mx.random.seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    x, y = mx.random.normal((16, 4)), mx.random.normal((16, 1))
    before = {k: np.array(v) for k, v in nn.utils.tree_flatten(model.parameters())}
    kappa = top_hessian_eigenvalue(model, lambda m: ((m(x) - y) ** 2).mean())
    assert np.isfinite(kappa) and kappa > 0
    assert all(np.array_equal(before[k], np.array(v)) for k, v in nn.utils.tree_flatten(model.parameters()))


def test_a_large_negative_eigenvalue_does_not_hide_the_top_one():
    """Plain power iteration returns -50 here (largest magnitude); kappa-hat is the largest algebraic, 3."""
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    a = mx.array((q * np.array([3.0, 1.0, 0.5, -2.0, -50.0])) @ q.T, dtype=mx.float32)
    model = Quadratic(5)
    kappa = top_hessian_eigenvalue(model, lambda m: 0.5 * m.x @ a @ m.x, iterations=60)
    assert kappa == pytest.approx(3.0, rel=1e-2)


def test_s_geo_prices_only_positive_curvature():
    from meqg_mlx.config import ObjectiveConfig
    from meqg_mlx.diamond.objective import Objective
    from meqg_mlx.vmm.model import ModelArgs

    objective = Objective(ObjectiveConfig(lambda_kappa=1.0), ModelArgs())
    flat = objective.s_geo(10, kappa=0.0)
    assert objective.s_geo(10, kappa=-4486.0) == flat and objective.s_geo(10, kappa=2.0) == pytest.approx(flat + 2.0)
