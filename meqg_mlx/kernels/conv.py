"""The SSD mixer's short convolution as one kernel per direction (body: metal/conv.h).

silu(causal depthwise conv1d + bias) over a window that already holds the K - 1 steps
before the first output: zeros for a new sequence, a decoding cache's last inputs
otherwise. MLX's CPU backend runs a grouped conv1d as a naive loop (~4 ms forward and
backward for a 16 x 32 x 320 window); the MLX ops stay the reference.
"""

from __future__ import annotations

from functools import cache

import mlx.core as mx
import mlx.nn as nn

from ..errors import InputError
from . import device_backend, extension, gpu_kernel, kernel_function, kernel_status, launch


def causal_conv_silu(window: mx.array, weight: mx.array, bias: mx.array) -> mx.array:
    """window (b, l + K - 1, C), weight (C, K, 1) (nn.Conv1d's with groups=C), bias (C,) -> (b, l, C)."""
    if window.ndim != 3 or weight.ndim != 3 or bias.ndim != 1:
        raise InputError(
            f"causal conv: window, weight and bias must be 3-, 3- and 1-d, got {window.ndim}, "
            f"{weight.ndim} and {bias.ndim}"
        )
    channels, taps = window.shape[2], weight.shape[1]
    if weight.shape != (channels, taps, 1) or bias.shape != (channels,) or window.shape[1] < taps:
        raise InputError(
            f"causal conv: for a window {window.shape}, weight must be ({channels}, K, 1) with K <= "
            f"{window.shape[1]} and bias ({channels},); got {weight.shape} and {bias.shape}"
        )
    if kernel_status("causal_conv").backend is None:
        return reference(window, weight, bias)
    return _conv()(window, weight, bias)[0].astype(window.dtype)


def reference(window: mx.array, weight: mx.array, bias: mx.array) -> mx.array:
    return nn.silu(mx.conv1d(window, weight, groups=window.shape[-1]) + bias)


@cache
def _conv():
    def forward(window, weight, bias):
        return [_forward(window, weight[..., 0].T, bias)]

    def backward(inputs, outputs, cotangents):
        window, weight, bias = inputs
        d_window, d_taps, d_bias = _backward(window, weight[..., 0].T, bias, cotangents[0])
        return d_window, d_taps.T[..., None], d_bias

    return kernel_function(forward, backward, lambda *inputs: (reference(*inputs),))


def _dims(window, taps) -> dict:
    b, steps, channels = window.shape
    return {"L": steps - taps.shape[0] + 1, "C": channels, "K": taps.shape[0], "B": b}


def _forward(window, taps, bias):
    backend = device_backend()
    if backend == "cpu":
        return extension().conv_forward(window, taps, bias)
    dims = _dims(window, taps)
    dims["ROWS"] = dims["B"] * dims["L"] * dims["C"]
    out = (dims["B"], dims["L"], dims["C"])
    return launch(_gpu_kernels(backend)[0], [window, taps, bias], dims, [out])[0]


def _backward(window, taps, bias, d_y):
    backend = device_backend()
    if backend == "cpu":
        return extension().conv_backward(window, taps, bias, d_y)
    (_, pre, data, weights), dims = _gpu_kernels(backend), _dims(window, taps)
    d_pre = launch(pre, [window, taps, bias, d_y], {**dims, "ROWS": d_y.size}, [d_y.shape])[0]
    d_window = launch(data, [taps, d_pre], {**dims, "ROWS": window.size}, [window.shape])[0]
    d_taps, d_bias = launch(
        weights, [window, d_pre], {**dims, "ROWS": dims["B"] * dims["C"]}, [taps.shape, bias.shape], init_value=0
    )
    return d_window, d_taps, d_bias


@cache
def _gpu_kernels(backend: str):
    """(forward, and the backward pass's d_pre, d_window and weight-gradient kernels): a thread
    per output element, per window element, and per (batch entry, channel) adding atomically."""
    bodies, shape = ["activations.h", "conv.h"], "L, C, K"
    step = "row / (L * C), (row / C) % L, row % C, row % C + 1"
    forward = gpu_kernel(
        "meqg_conv_forward",
        ["x", "w", "bias"],
        ["y"],
        bodies,
        f"meqg_conv_forward({step}, x, w, bias, y, {shape})",
        atomic=False,
    )
    pre = gpu_kernel(
        "meqg_conv_backward_pre",
        ["x", "w", "bias", "d_y"],
        ["d_pre"],
        bodies,
        f"meqg_conv_backward_pre({step}, x, w, bias, d_y, d_pre, {shape})",
        atomic=False,
    )
    data = gpu_kernel(
        "meqg_conv_backward_input",
        ["w", "d_pre"],
        ["d_x"],
        bodies,
        "meqg_conv_backward_input(row / ((L + K - 1) * C), (row / C) % (L + K - 1), row % C, row % C + 1, "
        f"w, d_pre, d_x, {shape})",
        atomic=False,
    )
    weights = gpu_kernel(
        "meqg_conv_backward_weights",
        ["x", "d_pre"],
        ["d_w", "d_bias"],
        bodies,
        f"meqg_conv_backward_weights(row / C, row / C + 1, row % C, row % C + 1, x, d_pre, d_w, d_bias, {shape})",
        atomic=True,
    )
    return forward, pre, data, weights
