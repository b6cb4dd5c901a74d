"""Inverter: a small causal transformer that writes the text of a concept vector.

Conditioning in the vec2text manner: the target vector, a hypothesis's vector and
their difference go through one MLP into `prefix_tokens` embeddings each, placed
before the text. The first pass has no hypothesis (zeros); the corrector loop feeds
back the embedding of its best text so far. Token embeddings are tied to the output
layer and start from the embedder's own word embeddings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..kernels.softmax import inverse_cdf


@dataclass
class ModelArgs:
    concept_dim: int = 384
    vocab_size: int = 8192
    hidden: int = 384
    layers: int = 4
    heads: int = 6
    prefix_tokens: int = 4
    max_tokens: int = 32  # text tokens including BOS and EOS

    @property
    def prefix_length(self) -> int:
        return 3 * self.prefix_tokens


def row_uniforms(seeds: np.ndarray, position: int) -> np.ndarray:
    """One uniform in (0, 1) per row from the row's own seed and the token position (splitmix64).

    A row's samples then depend on its seed alone, never on the rows decoded beside it.
    """
    with np.errstate(over="ignore"):  # wrapping uint64 arithmetic is the point
        x = np.asarray(seeds, np.uint64) + np.uint64(position + 1) * np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53


def sample_rows(logits: mx.array, temperature: float, seeds: np.ndarray, position: int) -> mx.array:
    """A token per row drawn from softmax(logits / temperature) by the inverse CDF at the row's uniform."""
    uniforms = mx.array(row_uniforms(seeds, position).astype(np.float32))[:, None]
    return inverse_cdf(logits.astype(mx.float32) / temperature, uniforms)


class KVCache:
    def __init__(self):
        self.keys = self.values = None

    def update(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        if self.keys is not None:
            keys = mx.concatenate([self.keys, keys], axis=2)
            values = mx.concatenate([self.values, values], axis=2)
        self.keys, self.values = keys, values
        return keys, values


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.heads = args.heads
        self.scale = (args.hidden // args.heads) ** -0.5
        self.qkv = nn.Linear(args.hidden, 3 * args.hidden, bias=False)
        self.out = nn.Linear(args.hidden, args.hidden, bias=False)

    def __call__(self, x: mx.array, cache: KVCache | None) -> mx.array:
        B, L, D = x.shape
        q, k, v = (t.reshape(B, L, self.heads, -1).transpose(0, 2, 1, 3) for t in mx.split(self.qkv(x), 3, -1))
        if cache is not None:
            k, v = cache.update(k, v)
        mask = "causal" if L > 1 else None
        o = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale, mask=mask)
        return self.out(o.transpose(0, 2, 1, 3).reshape(B, L, D))


class MLP(nn.Module):
    """Squared-ReLU feed-forward: as good as gated SiLU here, and MLX's x86 CPU backend has no vector exp."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.up = nn.Linear(args.hidden, 3 * args.hidden, bias=False)
        self.down = nn.Linear(3 * args.hidden, args.hidden, bias=False)

    def __call__(self, x: mx.array) -> mx.array:
        return self.down(mx.square(nn.relu(self.up(x))))


class Block(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention_norm = nn.RMSNorm(args.hidden)
        self.attention = Attention(args)
        self.mlp_norm = nn.RMSNorm(args.hidden)
        self.mlp = MLP(args)

    def __call__(self, x: mx.array, cache: KVCache | None) -> mx.array:
        x = x + self.attention(self.attention_norm(x), cache)
        return x + self.mlp(self.mlp_norm(x))


class Inverter(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.condition = nn.Sequential(
            nn.Linear(3 * args.concept_dim, 2 * args.hidden),
            nn.ReLU(),
            nn.Linear(2 * args.hidden, args.prefix_length * args.hidden),
        )
        self.embed = nn.Embedding(args.vocab_size, args.hidden)
        self.positions = nn.Embedding(args.prefix_length + args.max_tokens, args.hidden)
        self.blocks = [Block(args) for _ in range(args.layers)]
        self.norm = nn.RMSNorm(args.hidden)
        self.bias = mx.zeros((args.vocab_size,))

    def prefix(self, targets: mx.array, hypotheses: mx.array) -> mx.array:
        """(B, dim) targets and hypothesis vectors (zeros: none yet) -> (B, prefix_length, hidden)."""
        conditions = mx.concatenate([targets, hypotheses, targets - hypotheses], axis=-1)
        return self.condition(conditions).reshape(targets.shape[0], self.args.prefix_length, self.args.hidden)

    def __call__(
        self, tokens: mx.array, prefix: mx.array | None = None, cache: list[KVCache] | None = None, offset: int = 0
    ) -> mx.array:
        """Logits for the next token at every text position; with a prefix it comes first.

        `offset` is the number of positions already in the cache (generation).
        """
        x = self.embed(tokens)
        if prefix is not None:
            x = mx.concatenate([prefix, x], axis=1)
        x = x + self.positions(mx.arange(offset, offset + x.shape[1]))
        for i, block in enumerate(self.blocks):
            x = block(x, cache[i] if cache is not None else None)
        if prefix is not None:
            x = x[:, prefix.shape[1] :]
        return self.embed.as_linear(self.norm(x)) + self.bias

    def generate(
        self,
        targets: mx.array,
        hypotheses: mx.array,
        bos: int,
        eos: int,
        temperature: float = 0.0,
        seeds: np.ndarray | None = None,
        deadline: float | None = None,
    ) -> mx.array:
        """(B, <= max_tokens - 1) token ids after BOS, greedy or sampled, EOS-padded once finished.

        Sampling (temperature > 0) draws row b's tokens from `seeds[b]` alone (`sample_rows`).
        Past `deadline` (time.perf_counter()) it stops and returns the tokens so far.
        """
        if temperature > 0 and (seeds is None or len(seeds) != targets.shape[0]):
            raise ValueError("sampling needs one seed per row")
        B = targets.shape[0]
        cache = [KVCache() for _ in self.blocks]
        logits = self(mx.full((B, 1), bos, mx.int32), self.prefix(targets, hypotheses), cache)[:, -1]
        offset = self.args.prefix_length + 1
        done = mx.zeros((B,), mx.bool_)
        out = []
        for step in range(self.args.max_tokens - 1):
            if temperature > 0:
                token = sample_rows(logits, temperature, seeds, step)
            else:
                token = mx.argmax(logits, axis=-1)
            token = mx.where(done, eos, token).astype(mx.int32)
            out.append(token)
            done = done | (token == eos)
            if step % 4 == 3 and bool(mx.all(done)) or deadline is not None and time.perf_counter() > deadline:
                break
            logits = self(token[:, None], None, cache, offset)[:, -1]
            offset += 1
        return mx.stack(out, axis=1)
