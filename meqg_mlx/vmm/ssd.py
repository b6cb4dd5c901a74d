"""Mamba-2 SSD mixer: in-projection, short causal conv, the SSD scan, gated norm.

The scan itself (its kernel and the MLX-ops references `ssd_chunked` and `ssd_sequential`)
lives in `meqg_mlx.kernels.ssd`.

PyTorch twin: converters/torch_vmm.py (tests/converters/test_twins.py keeps the two in step).
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from ..kernels import kernel_status
from ..kernels.activations import softplus, swiglu
from ..kernels.conv import causal_conv_silu
from ..kernels.ssd import ssd_chunked, ssd_scan, ssd_sequential
from .cache import MixerCache, WindowCache


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
