"""Mamba-2 SSD mixer in plain MLX ops: a chunked (state-space duality) scan and the
step-by-step recurrence it must equal, which the tests use as the reference.

Shapes: x (b, l, h, p) per-head inputs; dt (b, l, h) positive step sizes (after
softplus); A (h,) negative decay rates; B, C (b, l, g, n) with g groups shared by
h // g heads each; D (h,) skip. State (b, h, p, n):
    S_t = exp(dt_t * A) * S_{t-1} + dt_t * x_t (outer) B_t,     y_t = S_t . C_t + D * x_t
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from ..kernels import kernel_status
from ..kernels.activations import softplus, swiglu
from ..kernels.conv import causal_conv_silu
from ..kernels.ssd import ssd_scan
from .cache import MixerCache, WindowCache


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


@dataclass
class SSDArgs:
    d_model: int
    d_state: int = 64
    expand: int = 2
    head_dim: int = 64
    n_groups: int = 1
    conv_kernel: int = 4
    chunk_size: int = 64


class SSDMixer(nn.Module):
    """Mamba-2 mixer: in-projection, causal depthwise conv, SSD scan, gated RMSNorm, out-projection."""

    def __init__(self, args: SSDArgs):
        super().__init__()
        self.args = args
        self.d_inner = args.expand * args.d_model
        if self.d_inner % args.head_dim or (self.d_inner // args.head_dim) % args.n_groups:
            raise ValueError("expand * d_model must split into heads of head_dim, and heads into n_groups")
        self.n_heads = self.d_inner // args.head_dim
        conv_dim = self.d_inner + 2 * args.n_groups * args.d_state
        self.in_proj = nn.Linear(args.d_model, self.d_inner + conv_dim + self.n_heads, bias=False)
        self.conv = nn.Conv1d(conv_dim, conv_dim, args.conv_kernel, groups=conv_dim)  # causal: inputs come left-padded
        self.dt_bias = mx.log(mx.expm1(mx.exp(mx.random.uniform(mx.log(1e-3), mx.log(1e-1), (self.n_heads,)))))
        self.A_log = mx.log(mx.random.uniform(1.0, 16.0, (self.n_heads,)))
        self.D = mx.ones((self.n_heads,))
        self.norm = nn.RMSNorm(self.d_inner)
        self.out_proj = nn.Linear(self.d_inner, args.d_model, bias=False)

    def __call__(self, u: mx.array, cache: MixerCache | None = None, reference: bool = False) -> mx.array:
        """u (b, l, d_model) -> (b, l, d_model); with `cache`, continue the sequence it holds and update it.

        The scan is meqg's kernel where one runs on this device (`meqg_mlx.kernels`), else MLX ops: the
        recurrence step by step for a single new position (and for `reference`), the chunked scan otherwise.
        """
        b, length, _ = u.shape
        a = self.args
        z, xbc, dt = mx.split(self.in_proj(u), [self.d_inner, 2 * self.d_inner + 2 * a.n_groups * a.d_state], -1)
        window = (cache.conv if cache is not None else WindowCache(a.conv_kernel - 1)).update_and_fetch(xbc)
        xbc = causal_conv_silu(window, self.conv.weight, self.conv.bias)
        x, B, C = mx.split(xbc, [self.d_inner, self.d_inner + a.n_groups * a.d_state], -1)
        x = x.reshape(b, length, self.n_heads, a.head_dim)
        B = B.reshape(b, length, a.n_groups, a.d_state)
        C = C.reshape(b, length, a.n_groups, a.d_state)
        dt = softplus(dt + self.dt_bias)
        A = -mx.exp(self.A_log)
        state = cache.ssm if cache is not None else None
        if reference:
            y, state = ssd_sequential(x, dt, A, B, C, self.D, state)
        elif kernel_status("ssd_scan").backend is not None:
            y, state = ssd_scan(x, dt, A, B, C, self.D, a.chunk_size, state)
        elif cache is not None and length == 1:
            y, state = ssd_sequential(x, dt, A, B, C, self.D, state)
        else:
            y, state = ssd_chunked(x, dt, A, B, C, self.D, a.chunk_size, state)
        if cache is not None:
            cache.ssm = state
        y = self.norm(swiglu(z, y.reshape(b, length, self.d_inner)))
        return self.out_proj(y)
