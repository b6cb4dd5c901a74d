"""Mixture-of-experts feed-forward: top-k routing with a domain prior and a load-balancing loss.

Router logits = learned projection + beta * prior, where the prior is the cosine of
each token's concept vector to the expert's domain centroid (computed once per
sequence by the model). Only the k chosen experts run for each token.

PyTorch twin: converters/torch_vmm.py (tests/converters/test_twins.py keeps the two in step).
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from ..kernels import kernel_status
from ..kernels.activations import swiglu
from ..kernels.grouped import grouped_linear


@dataclass
class RouterStats:
    balance_loss: mx.array  # Switch-Transformer loss E * sum_e f_e * P_e; 1.0 when perfectly balanced
    load: mx.array  # (E,) tokens routed to each expert (top-k slots)
    entropy: mx.array  # mean entropy of the router distribution, nats


@mx.custom_function
def take_rows(x: mx.array, index: mx.array, inverse: mx.array) -> mx.array:
    """x[index], where `index` takes every row of x equally often and `inverse` lists, row by
    row of x, where its copies went (index[inverse[i]] == i // copies). Its gradient is then
    a gather and a sum, where MLX's gather takes a scatter-add (~2 ms per MoE layer on the CPU)."""
    return x[index]


@take_rows.vjp
def _take_rows_vjp(primals, cotangent, _):
    x, index, inverse = primals
    copies = index.shape[0] // x.shape[0]
    d_x = cotangent[inverse].reshape(x.shape[0], copies, *x.shape[1:]).sum(1)
    return d_x, mx.zeros_like(index), mx.zeros_like(inverse)


class ExpertsGLU(nn.Module):
    """E independent SwiGLU experts evaluated only for the (token, expert) pairs chosen.

    The pairs are sorted by expert. On a GPU they go through `gather_mm` with sorted
    indices (as mlx-lm's SwitchGLU does); on the CPU, where `gather_mm` runs one tiny
    product per pair and its gradient is slower still (~30x a whole PyTorch step, seen),
    each expert's run of rows is one matrix product instead (`kernels.grouped`): meqg's
    kernel finds the runs itself; without it they are split on the host, one sync per
    layer, cheap on the CPU, yet a fixed ~2 ms that `gather_mm` beats for a handful of
    tokens (a decoding step: SEGMENTED_MIN_PAIRS, measured).
    """

    SEGMENTED_MIN_PAIRS = 16

    def __init__(self, d_model: int, d_ff: int, n_experts: int):
        super().__init__()
        scale_in, scale_out = d_model**-0.5, d_ff**-0.5
        self.gate = mx.random.uniform(-scale_in, scale_in, (n_experts, d_ff, d_model))
        self.up = mx.random.uniform(-scale_in, scale_in, (n_experts, d_ff, d_model))
        self.down = mx.random.uniform(-scale_out, scale_out, (n_experts, d_model, d_ff))

    def __call__(self, x: mx.array, indices: mx.array, segmented: bool | None = None) -> mx.array:
        """x (N, d), indices (N, k) -> (N, k, d): expert indices[n, j] applied to x[n]."""
        flat = indices.flatten()
        if segmented is None:
            grouped_kernel = kernel_status("grouped_matmul").backend is not None
            segmented = mx.default_device() == mx.cpu and (grouped_kernel or flat.size >= self.SEGMENTED_MIN_PAIRS)
        order = mx.argsort(flat)
        unsort = mx.argsort(order)
        rows = take_rows(x, order // indices.shape[1], unsort)
        out = self._segments(rows, flat[order]) if segmented else self._gathered(rows, flat[order])
        return take_rows(out, unsort, order).reshape(*indices.shape, x.shape[-1])

    def _gathered(self, rows: mx.array, experts: mx.array) -> mx.array:
        rows = mx.expand_dims(rows, -2)
        gate = mx.gather_mm(rows, self.gate.swapaxes(-1, -2), rhs_indices=experts, sorted_indices=True)
        up = mx.gather_mm(rows, self.up.swapaxes(-1, -2), rhs_indices=experts, sorted_indices=True)
        out = mx.gather_mm(swiglu(gate, up), self.down.swapaxes(-1, -2), rhs_indices=experts, sorted_indices=True)
        return out.squeeze(-2)

    def _segments(self, rows: mx.array, experts: mx.array) -> mx.array:
        hidden = swiglu(grouped_linear(rows, self.gate, experts), grouped_linear(rows, self.up, experts))
        return grouped_linear(hidden, self.down, experts)


class MoEFeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, n_experts: int, top_k: int, beta: float = 1.0):
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k must be in [1, n_experts={n_experts}], got {top_k}")
        self.top_k = top_k
        self.beta = beta
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.experts = ExpertsGLU(d_model, d_ff, n_experts)

    def route(self, x: mx.array, prior: mx.array | None = None) -> tuple[mx.array, mx.array, mx.array]:
        """x (N, d) -> router probabilities (N, E), chosen experts (N, k), their gates (N, k)."""
        logits = self.router(x)
        if prior is not None:
            logits = logits + self.beta * prior
        indices = mx.stop_gradient(mx.argpartition(-logits, self.top_k - 1, axis=-1)[:, : self.top_k])
        gates = mx.softmax(mx.take_along_axis(logits, indices, axis=-1), axis=-1)
        return mx.softmax(logits, axis=-1), indices, gates

    def __call__(self, x: mx.array, prior: mx.array | None = None) -> tuple[mx.array, RouterStats]:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        probs, indices, gates = self.route(flat, None if prior is None else prior.reshape(flat.shape[0], -1))
        y = (self.experts(flat, indices) * gates[..., None]).sum(axis=1)
        n_experts = probs.shape[-1]
        load = mx.stop_gradient((mx.expand_dims(indices, -1) == mx.arange(n_experts)).sum(axis=(0, 1)))
        fraction = load / (flat.shape[0] * self.top_k)
        balance = n_experts * (fraction * probs.mean(axis=0)).sum()
        entropy = -(probs * mx.log(probs + 1e-12)).sum(axis=-1).mean()
        return y.reshape(shape), RouterStats(balance, load, entropy)
