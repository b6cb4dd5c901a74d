"""RVQ's nearest-code kernel against mx.argmin over the same distances, on each backend."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from meqg_mlx.errors import InputError
from meqg_mlx.kernels import kernel_status
from meqg_mlx.kernels.rvq import KERNEL_MIN_ROWS, nearest_code, reference
from meqg_mlx.vmm.rvq import ResidualVQ, RVQArgs


# (rows, codes, dim): odd sizes, one code, the fewest rows the kernel takes, and enough rows that
# the CPU extension splits them over threads (outputs are not zeroed: a row no thread ran shows).
@pytest.mark.parametrize("shape", [(67, 29, 11), (65, 1, 3), (KERNEL_MIN_ROWS, 256, 384), (4099, 256, 64)], ids=str)
def test_codes_match_the_argmin_of_the_reference(device, shape):
    assert kernel_status("nearest_code").backend == device
    rows, codes, dim = shape
    keys = mx.random.split(mx.random.key(rows), 2)
    residual, book = mx.random.normal((rows, dim), key=keys[0]), mx.random.normal((codes, dim), key=keys[1])
    got = nearest_code(residual, book)
    assert got.dtype == mx.uint32 and got.shape == (rows,)
    assert np.array_equal(got, reference(residual, book))


def test_ties_go_to_the_lower_index(device):
    book = mx.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    residual = mx.tile(mx.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), (KERNEL_MIN_ROWS, 1))
    assert nearest_code(residual, book).tolist()[:3] == [1, 0, 0]
    assert np.array_equal(nearest_code(residual, book), reference(residual, book))


def test_the_quantizer_encodes_as_it_did_with_mlx_ops(device, monkeypatch):
    quantizer = ResidualVQ(RVQArgs(dim=24, levels=3, codes=16))
    x = mx.random.normal((300, 24), key=mx.random.key(7))
    quantizer.initialize(x)
    codes, residuals = quantizer.encode(x)
    monkeypatch.setenv("MEQG_KERNELS", "0")
    reference_codes, reference_residuals = quantizer.encode(x)
    assert np.array_equal(codes, reference_codes)
    assert np.allclose(residuals, reference_residuals, atol=1e-6)


def test_wrong_shapes_are_refused(device):
    with pytest.raises(InputError, match=r"book \(C >= 1, d\)"):
        nearest_code(mx.zeros((3, 4)), mx.zeros((5, 3)))
    with pytest.raises(InputError, match="nearest_code"):
        nearest_code(mx.zeros((3, 4)), mx.zeros((0, 4)))
