"""The SSD scan (Mamba-2's state-space duality) as one kernel per direction (body:
metal/ssd_scan.h), with its gradient, and its two MLX-ops references.

Shapes: x (b, l, h, p) per-head inputs; dt (b, l, h) positive step sizes (after
softplus); A (h,) negative decay rates; B, C (b, l, g, n) with g groups shared by
h // g heads each; D (h,) skip. State (b, h, p, n):
    S_t = exp(dt_t * A) * S_{t-1} + dt_t * x_t (outer) B_t,     y_t = S_t . C_t + D * x_t
`ssd_sequential` runs that recurrence step by step (slow, obviously right); `ssd_chunked`
runs it as matrix products within chunks (the kernel's reference and the path without
a kernel). The kernels take
x, dt and D as they are and decay = exp(dt A), one per head and step, from MLX ops (which
also chain its gradient into dt's and A's); everything of the size of x stays in the
kernels, whose backward pass returns x's gradient and D's whole. The forward pass
also keeps the state entering every chunk of `chunk_size` steps; the backward pass
recomputes each chunk's states from there, so memory stays O(l / chunk) states, not O(l).
A single step (l = 1, a decoding step from a cache) is the same kernel. Second derivatives
(Hessian-vector products) go through the reference's gradient.

PyTorch twin: converters/torch_vmm.py (tests/converters/test_twins.py keeps the two in step).
"""

from __future__ import annotations

from functools import cache

import mlx.core as mx

from ..errors import InputError
from . import device_backend, extension, gpu_kernel, kernel_function, launch

FORWARD_INPUTS = ["x", "dt", "decay", "B", "C", "D", "state_in"]
FORWARD_OUTPUTS = ["y", "state_out", "checkpoints"]
BACKWARD_INPUTS = ["x", "dt", "decay", "B", "C", "D", "checkpoints", "d_y", "d_state_out"]
BACKWARD_OUTPUTS = ["d_x", "d_dt_x", "d_decay", "d_B", "d_C", "d_D", "d_state_in", "history"]  # history: scratch


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


def _heads(v: mx.array, heads: int) -> mx.array:
    """(b, l, g, n) -> (b, l, h, n): each group serves heads // g consecutive heads."""
    return mx.repeat(v, heads // v.shape[2], axis=2)


def ssd_sequential(x, dt, A, B, C, D, state=None):
    """The recurrence one step at a time (slow, obviously right). Returns (y, final state)."""
    b, length, h, p = x.shape
    Bh, Ch = _heads(B, h), _heads(C, h)
    S = mx.zeros((b, h, p, B.shape[-1]), dtype=x.dtype) if state is None else state
    ys = []
    for t in range(length):
        decay = mx.exp(dt[:, t] * A)[..., None, None]
        S = decay * S + (dt[:, t, :, None, None] * x[:, t, :, :, None]) * Bh[:, t, :, None, :]
        ys.append((S * Ch[:, t, :, None, :]).sum(-1) + D[:, None] * x[:, t])
    return mx.stack(ys, axis=1), S


def segment_sums(a: mx.array) -> mx.array:
    """(..., Q) -> (..., Q, Q): out[i, j] = a[j+1] + ... + a[i] for i >= j, -inf above the diagonal."""
    q = a.shape[-1]
    cumulative = mx.cumsum(a, axis=-1)
    sums = cumulative[..., :, None] - cumulative[..., None, :]
    causal = mx.tril(mx.ones((q, q), dtype=mx.bool_))
    return mx.where(causal, sums, -mx.inf)


def ssd_chunked(x, dt, A, B, C, D, chunk_size: int = 64, state=None):
    """The same recurrence as matrix products within chunks and a short scan across chunks."""
    b, length, h, p = x.shape
    n = B.shape[-1]
    pad = (-length) % chunk_size
    if pad:  # dt = 0 and x = 0 in the padding: decay 1, no input, final state unchanged
        x, dt = mx.pad(x, [(0, 0), (0, pad), (0, 0), (0, 0)]), mx.pad(dt, [(0, 0), (0, pad), (0, 0)])
        B, C = (mx.pad(v, [(0, 0), (0, pad), (0, 0), (0, 0)]) for v in (B, C))
    chunks = (length + pad) // chunk_size
    to_chunks = lambda v: v.reshape(b, chunks, chunk_size, *v.shape[2:])  # noqa: E731
    xdt = to_chunks(x * dt[..., None]).transpose(0, 3, 1, 2, 4)  # (b, h, c, Q, p)
    Bh = to_chunks(_heads(B, h)).transpose(0, 3, 1, 2, 4)  # (b, h, c, Q, n)
    Ch = to_chunks(_heads(C, h)).transpose(0, 3, 1, 2, 4)  # (b, h, c, Q, n)
    a = to_chunks(dt * A).transpose(0, 3, 1, 2)  # (b, h, c, Q)
    a_cum = mx.cumsum(a, axis=-1)

    within = (Ch @ Bh.swapaxes(-1, -2)) * mx.exp(segment_sums(a))  # (b, h, c, Q, Q)
    y = within @ xdt
    to_end = mx.exp(a_cum[..., -1:] - a_cum)  # decay from step j to chunk end
    chunk_states = (xdt * to_end[..., None]).swapaxes(-1, -2) @ Bh  # (b, h, c, p, n)
    chunk_decay = mx.exp(a_cum[..., -1])  # (b, h, c)
    S = mx.zeros((b, h, p, n), dtype=x.dtype) if state is None else state
    entering = []
    for c in range(chunks):
        entering.append(S)
        S = chunk_decay[:, :, c, None, None] * S + chunk_states[:, :, c]
    entering = mx.stack(entering, axis=2)  # (b, h, c, p, n)
    y = y + (Ch @ entering.swapaxes(-1, -2)) * mx.exp(a_cum)[..., None]
    y = y.transpose(0, 2, 3, 1, 4).reshape(b, chunks * chunk_size, h, p)[:, :length]
    return y + D[:, None] * x[:, :length], S


@cache
def _scan(chunk: int):
    def forward(x, dt, A, B, C, D, state):
        return _forward(x, dt, mx.exp(dt * A), B, C, D, state, chunk)

    def backward(inputs, outputs, cotangents):
        x, dt, A, B, C, D, _ = inputs
        decay = mx.exp(dt * A)
        d_x, d_dt_x, d_decay, d_B, d_C, d_D, d_state = _backward(
            x, dt, decay, B, C, D, outputs[2], *cotangents[:2], chunk
        )[:7]
        b, length, groups, n = B.shape
        per_group = lambda d: d.reshape(b, length, groups, -1, n).sum(3)  # noqa: E731
        d_log_decay = d_decay * decay
        return (
            d_x,
            d_dt_x + d_log_decay * A,
            (d_log_decay * dt).sum((0, 1)),
            per_group(d_B),
            per_group(d_C),
            d_D.sum(0),
            d_state,
        )

    def reference(x, dt, A, B, C, D, state):
        return ssd_chunked(x, dt, A, B, C, D, chunk, state)

    return kernel_function(forward, backward, reference, internal_outputs=1)


def _dims(x, B, chunk: int) -> dict:
    b, length, h, p = x.shape
    return {"L": length, "H": h, "P": p, "G": B.shape[2], "N": B.shape[3], "Q": chunk, "ROWS": b * h * p}


def _forward(x, dt, decay, B, C, D, state, chunk: int):
    backend = device_backend()
    inputs = [x, dt, decay, B, C, D, state]
    if backend == "cpu":
        return tuple(extension().ssd_scan_forward(*inputs, chunk))
    dims = _dims(x, B, chunk)
    checkpoints = (*state.shape[:3], -(-dims["L"] // chunk), dims["N"])
    return tuple(launch(_gpu_kernels(backend)[0], inputs, dims, [x.shape, state.shape, checkpoints]))


def _backward(x, dt, decay, B, C, D, checkpoints, d_y, d_state, chunk: int):
    backend = device_backend()
    inputs = [x, dt, decay, B, C, D, checkpoints, d_y, d_state]
    if backend == "cpu":
        return extension().ssd_scan_backward(*inputs, chunk)
    dims = _dims(x, B, chunk)
    per_head = (*decay.shape, dims["N"])
    history = (dims["ROWS"], chunk + 1, dims["N"])
    shapes = [x.shape, dt.shape, dt.shape, per_head, per_head, (x.shape[0], D.shape[0]), d_state.shape, history]
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
