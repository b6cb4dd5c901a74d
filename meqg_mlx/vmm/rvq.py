"""Residual vector quantization of concept vectors: K levels x C codes, EMA codebooks.

Codebooks are updated by exponential moving averages (not by the optimizer); a code
whose usage falls below `dead_threshold` is re-seeded from a residual of the
current batch and gets a fresh code id, so an id, once issued, always names the
same code (ids are append-only; slots are reused).

PyTorch twin: converters/torch_vmm.py (tests/converters/test_twins.py keeps the two in step).
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from ..kernels.rvq import nearest_code


@dataclass
class RVQArgs:
    dim: int
    levels: int = 4
    codes: int = 256
    decay: float = 0.99
    dead_threshold: float = 1e-3
    epsilon: float = 1e-5


class ResidualVQ(nn.Module):
    def __init__(self, args: RVQArgs):
        super().__init__()
        self.args = args
        self.codebooks = mx.random.normal((args.levels, args.codes, args.dim)) * args.dim**-0.5
        self.cluster_size = mx.ones((args.levels, args.codes))
        self.embed_sum = mx.array(self.codebooks)
        self.code_ids = mx.arange(args.levels * args.codes).reshape(args.levels, args.codes)
        self.next_code_id = args.levels * args.codes
        self.freeze()

    def encode(self, x: mx.array) -> tuple[mx.array, mx.array]:
        """x (N, d) -> codes (N, K) slot indices and the residual before each level (K, N, d)."""
        residual = x
        codes, residuals = [], []
        for level in range(self.args.levels):
            book = self.codebooks[level]
            index = nearest_code(residual, book)
            residuals.append(residual)
            residual = residual - book[index]
            codes.append(index)
        return mx.stack(codes, axis=-1), mx.stack(residuals)

    def decode(self, codes: mx.array) -> mx.array:
        """codes (..., K) -> the sum of the chosen code vectors (..., d)."""
        return sum(self.codebooks[level][codes[..., level]] for level in range(self.args.levels))

    def __call__(self, x: mx.array) -> tuple[mx.array, mx.array]:
        """Quantize with a straight-through gradient: (quantized (N, d), codes (N, K))."""
        codes, _ = self.encode(x)
        quantized = self.decode(codes)
        return x + mx.stop_gradient(quantized - x), codes

    def initialize(self, x: mx.array, seed: int = 0) -> None:
        """Seed every level's codebook with residuals of `x` (N, d): random codes leave most slots unused."""
        a = self.args
        residual, books = mx.stop_gradient(x), []
        for level, key in enumerate(mx.random.split(mx.random.key(seed), a.levels)):
            book = residual[mx.random.permutation(residual.shape[0], key=key)[: a.codes]]
            if book.shape[0] < a.codes:
                book = mx.concatenate(
                    [book, residual[mx.random.randint(0, residual.shape[0], (a.codes - book.shape[0],), key=key)]]
                )
            books.append(book)
            residual = residual - book[nearest_code(residual, book)]
        self.codebooks = mx.stack(books)
        self.cluster_size = mx.ones((a.levels, a.codes))
        self.embed_sum = mx.array(self.codebooks)

    def update(self, x: mx.array, seed: int = 0) -> int:
        """One EMA step on a batch; returns how many dead codes were re-seeded."""
        a = self.args
        codes, residuals = self.encode(mx.stop_gradient(x))
        one_hot = (mx.expand_dims(codes.T, -1) == mx.arange(a.codes)).astype(x.dtype)  # (K, N, C)
        counts = one_hot.sum(axis=1)
        sums = one_hot.swapaxes(-1, -2) @ residuals  # (K, C, d)
        self.cluster_size = a.decay * self.cluster_size + (1 - a.decay) * counts
        self.embed_sum = a.decay * self.embed_sum + (1 - a.decay) * sums
        total = self.cluster_size.sum(axis=-1, keepdims=True)
        smoothed = (self.cluster_size + a.epsilon) / (total + a.codes * a.epsilon) * total
        self.codebooks = self.embed_sum / mx.expand_dims(smoothed, -1)
        return self._recycle(residuals, seed)

    def _recycle(self, residuals: mx.array, seed: int) -> int:
        a = self.args
        dead = self.cluster_size < a.dead_threshold
        n_dead = int(dead.sum())
        if n_dead == 0:
            return 0
        key = mx.random.key(seed)
        picks = mx.random.randint(0, residuals.shape[1], (a.levels, a.codes), key=key)
        fresh = mx.take_along_axis(residuals, mx.expand_dims(picks, -1), axis=1)  # (K, C, d)
        mask = mx.expand_dims(dead, -1)
        self.codebooks = mx.where(mask, fresh, self.codebooks)
        self.embed_sum = mx.where(mask, fresh, self.embed_sum)
        self.cluster_size = mx.where(dead, 1.0, self.cluster_size)
        new_ids = self.next_code_id + mx.cumsum(dead.reshape(-1).astype(mx.int32)).reshape(dead.shape) - 1
        self.code_ids = mx.where(dead, new_ids, self.code_ids)
        self.next_code_id += n_dead
        return n_dead

    def usage(self, codes: mx.array) -> tuple[mx.array, mx.array]:
        """Per level: code counts (K, C) in `codes` and perplexity exp(H) (K,), in [1, C]."""
        counts = (mx.expand_dims(codes.T, -1) == mx.arange(self.args.codes)).sum(axis=1).astype(mx.float32)
        p = counts / mx.maximum(counts.sum(axis=-1, keepdims=True), 1)
        return counts, mx.exp(-(p * mx.log(p + 1e-12)).sum(axis=-1))
