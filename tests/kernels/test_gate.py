"""The gate's one-pass reductions against their MLX-ops reference."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from meqg_mlx.kernels import extension, kernel_status
from meqg_mlx.kernels.gate import gate_reductions, gate_reductions_reference

# parameter arrays as a model has them: matrices, vectors, a scalar, and one longer than a tile
SHAPES = [(128, 384), (7,), (1,), (3, 5, 11), (40_000,)]


def arrays(seed=0):
    keys = iter(mx.random.split(mx.random.key(seed), 3 * len(SHAPES)))
    before = [mx.random.normal(s, key=next(keys)) for s in SHAPES]
    proposed = [b + 1e-2 * mx.random.normal(b.shape, key=next(keys)) for b in before]
    grads = [mx.random.normal(s, key=next(keys)) for s in SHAPES]
    return before, proposed, grads


def exact(before, proposed, grads) -> np.ndarray:
    rows = []
    as64 = lambda group: [np.array(a, dtype=np.float64).ravel() for a in group]  # noqa: E731
    for b, p, g in zip(as64(before), as64(proposed), as64(grads)):
        rows.append([((p - b) ** 2).sum(), (b * b).sum(), (g * (p - b)).sum(), (~np.isfinite(p)).sum()])
    return np.array(rows)


def test_sums_match_float64_and_the_reference(cpu):
    """The kernel sums tiles in float32 lanes: closer to float64 than the MLX ops (~1e-5 here)."""
    assert kernel_status("gate_reductions").backend == "cpu"
    data = arrays()
    got, reference, truth = np.array(gate_reductions(*data)), np.array(gate_reductions_reference(*data)), exact(*data)
    assert got.shape == (len(SHAPES), 4)
    scale = np.abs(truth).max(axis=0) + 1e-9  # errors relative to each column's largest sum
    assert (np.abs(got - truth).max(axis=0) <= 1e-6 * scale).all()
    assert (np.abs(reference - truth).max(axis=0) <= 1e-4 * scale).all()
    assert (got[:, 3] == 0).all()


def test_non_finite_proposed_values_are_counted_per_array(cpu):
    before, proposed, grads = arrays(seed=1)
    proposed[0] = proposed[0].at[3, 7].add(math.nan)
    proposed[4] = proposed[4].at[39_999].add(math.inf).at[5].add(-math.inf)
    got = np.array(gate_reductions(before, proposed, grads))
    want = np.array(gate_reductions_reference(before, proposed, grads))
    assert got[:, 3].tolist() == want[:, 3].tolist() == [1, 0, 0, 0, 2]
    assert np.isnan(got[0, 0]) and np.isinf(got[4, 0])


def test_mismatched_arrays_are_refused(cpu):
    before, proposed, grads = arrays()
    with pytest.raises(ValueError, match="differs in size"):
        extension().gate_reductions(before, proposed[:-1] + [mx.zeros((3,))], grads)
    with pytest.raises(ValueError, match="as many"):
        extension().gate_reductions(before, proposed[:-1], grads)
