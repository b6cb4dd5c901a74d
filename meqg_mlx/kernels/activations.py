"""Activations as CPU kernels (body: metal/activations.h), vectorised where MLX's CPU
backend evaluates exp, sigmoid and erf one element at a time.

Each function is its MLX op on other devices, with MEQG_KERNELS=0, or without the
extension; the MLX op is also the reference of the tests. Results agree with it to
float32 rounding (errors ~1e-7 relative, gelu ~1e-6 absolute in its far negative tail).
"""

from __future__ import annotations

from functools import cache

import mlx.core as mx
import mlx.nn as nn

from . import extension, kernel_status, kernel_function


def silu(x: mx.array) -> mx.array:
    return _apply("silu", nn.silu, x)


def softplus(x: mx.array) -> mx.array:
    return _apply("softplus", nn.softplus, x)


def gelu(x: mx.array) -> mx.array:
    """The exact (erf) GELU, as nn.gelu."""
    return _apply("gelu", nn.gelu, x)


def swiglu(a: mx.array, b: mx.array) -> mx.array:
    """silu(a) * b in one pass (the gate of SwiGLU experts and of the SSD mixer's output)."""
    if kernel_status("activations").backend is None or a.shape != b.shape:
        return nn.silu(a) * b
    return _swiglu()(a, b)[0].astype(mx.result_type(a, b))


def _apply(name: str, reference, x: mx.array) -> mx.array:
    if kernel_status("activations").backend is None:
        return reference(x)
    return _unary(name, reference)(x)[0].astype(x.dtype)


@cache
def _unary(name: str, reference):
    op, grad = getattr(extension().Pointwise, name), getattr(extension().Pointwise, f"{name}_grad")
    return kernel_function(
        lambda x: extension().pointwise(op, [x]),
        lambda inputs, outputs, cotangents: extension().pointwise(grad, [inputs[0], cotangents[0]]),
        lambda x: (reference(x),),
    )


@cache
def _swiglu():
    pointwise, op = extension().pointwise, extension().Pointwise
    return kernel_function(
        lambda a, b: pointwise(op.swiglu, [a, b]),
        lambda inputs, outputs, cotangents: pointwise(op.swiglu_grad, [*inputs, cotangents[0]]),
        lambda a, b: (nn.silu(a) * b,),
    )
