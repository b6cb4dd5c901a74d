"""How the kernel tests compare a kernel with its MLX-ops reference."""

from __future__ import annotations

import mlx.core as mx
import numpy as np


def weighted_sum(fn):
    """fn's outputs summed with a weight that differs per element, so a wrong gradient anywhere shows."""
    return lambda *args: (fn(*args) * mx.cos(fn(*args))).sum()


def close(got, want, tol=2e-5) -> bool:
    """Equal within `tol` of the reference's largest magnitude (at least 1)."""
    return np.allclose(got, want, atol=tol * max(1.0, float(mx.abs(want).max())))


def assert_hvp_matches_central_differences(loss, args, argnums, vector, eps=1e-3, rtol=2e-2):
    """Kernels have no second derivative of their own (`kernel_function` differentiates the
    reference's VJP), so check that product against the kernel's own backward: the
    Hessian-vector product must equal (grad(x + eps v) - grad(x - eps v)) / 2 eps."""

    def gradient(*a):
        grads = mx.grad(loss, argnums)(*a)
        return grads if isinstance(grads, tuple) else (grads,)  # one argnum: a bare array

    def along_vector(*a):
        return sum((g * v).sum() for g, v in zip(gradient(*a), vector))

    exact = mx.grad(along_vector, argnums)(*args)
    exact = exact if isinstance(exact, tuple) else (exact,)

    def gradient_at(sign):
        moved = list(args)
        for i, v in zip(argnums, vector):
            moved[i] = moved[i] + sign * eps * v
        return gradient(*moved)

    for i, e, plus, minus in zip(argnums, exact, gradient_at(1), gradient_at(-1)):
        estimate = (plus - minus) / (2 * eps)
        scale = max(1.0, float(mx.abs(estimate).max()))
        error = float(mx.abs(e - estimate).max())
        assert error <= rtol * scale, f"argument {i}: H v is {error:.3g} off its central difference (scale {scale:.3g})"
