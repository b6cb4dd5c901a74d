"""The SSD scan as one kernel per direction (body: metal/ssd_scan.h), with its gradient.

Same contract as `meqg_mlx.vmm.ssd.ssd_chunked` (its reference): y and the final state
of S_t = exp(dt_t A) S_{t-1} + dt_t x_t B_t^T, y_t = S_t C_t + D x_t. The kernels see
u = dt x and decay = exp(dt A), computed (and chained) by elementwise MLX ops. The forward pass
also keeps the state entering every chunk of `chunk_size` steps; the backward pass
recomputes each chunk's states from there, so memory stays O(l / chunk) states, not O(l).
A single step (l = 1, a decoding step from a cache) is the same kernel. Second derivatives
(Hessian-vector products) go through the reference's gradient.
"""

from __future__ import annotations

from functools import cache

import mlx.core as mx

from ..errors import InputError
from . import device_backend, extension, gpu_kernel, kernel_function, launch

FORWARD_INPUTS = ["u", "decay", "B", "C", "state_in"]
FORWARD_OUTPUTS = ["y", "state_out", "checkpoints"]
BACKWARD_INPUTS = ["u", "decay", "B", "C", "checkpoints", "d_y", "d_state_out"]
BACKWARD_OUTPUTS = ["d_u", "d_decay", "d_B", "d_C", "d_state_in", "history"]  # history: each row's scratch


def ssd_scan(x, dt, A, B, C, D, chunk_size: int = 64, state=None) -> tuple[mx.array, mx.array]:
    """x (b, l, h, p), dt (b, l, h), A (h,), B, C (b, l, g, n), D (h,), state (b, h, p, n) or None
    -> (y (b, l, h, p), final state (b, h, p, n)), differentiable in every input, twice.
    Shapes are checked here, for every backend: a kernel reads where the shapes say."""
    if x.ndim != 4 or B.ndim != 4:
        raise InputError(f"ssd_scan: x and B must be 4-d (b, l, h, p) and (b, l, g, n), got {x.shape} and {B.shape}")
    b, length, h, p = x.shape
    groups, n = B.shape[2:]
    expected = {
        "dt": (b, length, h),
        "A": (h,),
        "B": (b, length, groups, n),
        "C": (b, length, groups, n),
        "D": (h,),
        "state": (b, h, p, n),
    }
    given = {"dt": dt, "A": A, "B": B, "C": C, "D": D, "state": state}
    for name, shape in expected.items():
        if given[name] is not None and tuple(given[name].shape) != shape:
            raise InputError(f"ssd_scan: {name} must be {shape} for x {x.shape}, got {tuple(given[name].shape)}")
    if groups == 0 or h % groups or chunk_size < 1:
        raise InputError(f"ssd_scan: {h} heads must split into {groups} groups, and chunk_size ({chunk_size}) be >= 1")
    if state is None:
        state = mx.zeros((b, h, p, n), dtype=mx.float32)
    y, final, _ = _scan(min(chunk_size, length))(x, dt, A, B, C, D, state)
    return y.astype(x.dtype), final


@cache
def _scan(chunk: int):
    def forward(x, dt, A, B, C, D, state):
        y, final, checkpoints = _forward(x * dt[..., None], mx.exp(dt * A), B, C, state, chunk)
        return y + D[:, None] * x, final, checkpoints

    def backward(inputs, outputs, cotangents):
        x, dt, A, B, C, D, _ = inputs
        d_y, d_final = cotangents[:2]
        decay = mx.exp(dt * A)
        d_u, d_decay, d_B, d_C, d_state = _backward(x * dt[..., None], decay, B, C, outputs[2], d_y, d_final, chunk)[:5]
        b, length, groups, n = B.shape
        per_group = lambda d: d.reshape(b, length, groups, -1, n).sum(3)  # noqa: E731
        d_log_decay = d_decay * decay
        return (
            d_u * dt[..., None] + D[:, None] * d_y,
            (d_u * x).sum(-1) + d_log_decay * A,
            (d_log_decay * dt).sum((0, 1)),
            per_group(d_B),
            per_group(d_C),
            (d_y * x).sum((0, 1, 3)),
            d_state,
        )

    def reference(x, dt, A, B, C, D, state):
        from ..vmm.ssd import ssd_chunked  # vmm.ssd imports this module

        return ssd_chunked(x, dt, A, B, C, D, chunk, state)

    return kernel_function(forward, backward, reference, internal_outputs=1)


def _dims(u, B, chunk: int) -> dict:
    b, length, h, p = u.shape
    return {"L": length, "H": h, "P": p, "G": B.shape[2], "N": B.shape[3], "Q": chunk, "ROWS": b * h * p}


def _forward(u, decay, B, C, state, chunk: int):
    backend = device_backend()
    if backend == "cpu":
        return tuple(extension().ssd_scan_forward(u, decay, B, C, state, chunk))
    dims = _dims(u, B, chunk)
    checkpoints = (*state.shape[:3], -(-dims["L"] // chunk), dims["N"])
    return tuple(launch(_gpu_kernels(backend)[0], [u, decay, B, C, state], dims, [u.shape, state.shape, checkpoints]))


def _backward(u, decay, B, C, checkpoints, d_y, d_state, chunk: int):
    backend = device_backend()
    if backend == "cpu":
        return extension().ssd_scan_backward(u, decay, B, C, checkpoints, d_y, d_state, chunk)
    dims = _dims(u, B, chunk)
    per_head = (*decay.shape, dims["N"])
    shapes = [u.shape, decay.shape, per_head, per_head, d_state.shape, (dims["ROWS"], chunk + 1, dims["N"])]
    inputs = [u, decay, B, C, checkpoints, d_y, d_state]
    return launch(_gpu_kernels(backend)[1], inputs, dims, shapes, init_value=0)


@cache
def _gpu_kernels(backend: str):
    dims = "L, H, P, G, N, Q"
    forward = gpu_kernel(
        "meqg_ssd_scan_forward",
        FORWARD_INPUTS,
        FORWARD_OUTPUTS,
        ["ssd_scan.h"],
        f"meqg_ssd_forward_row(row, {', '.join(FORWARD_INPUTS + FORWARD_OUTPUTS)}, {dims})",
        atomic=False,
    )
    backward = gpu_kernel(
        "meqg_ssd_scan_backward",
        BACKWARD_INPUTS,
        BACKWARD_OUTPUTS,
        ["ssd_scan.h"],
        f"meqg_ssd_backward_row(row, {', '.join(BACKWARD_INPUTS + BACKWARD_OUTPUTS[:-1])}, "
        f"history + row * (Q + 1) * N, {dims})",
        atomic=True,
    )
    return forward, backward
