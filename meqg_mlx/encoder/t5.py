"""T5 encoder in MLX (GTR-style sentence encoders such as gtr-t5-base): HF T5EncoderModel
weights renamed in `sanitize`; relative position buckets computed as transformers does.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..errors import InputError
from .attention import attention, padding_bias


@dataclass
class ModelArgs:
    vocab_size: int = 32128
    d_model: int = 768
    d_kv: int = 64
    d_ff: int = 3072
    num_layers: int = 12
    num_heads: int = 12
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"

    @classmethod
    def from_config(cls, config: dict) -> "ModelArgs":
        args = cls(**{f.name: config[f.name] for f in fields(cls) if f.name in config})
        if args.feed_forward_proj not in ("relu", "gated-gelu"):
            raise InputError(f"unsupported feed_forward_proj {args.feed_forward_proj!r} (relu, gated-gelu)")
        return args

    @property
    def hidden_size(self) -> int:
        return self.d_model


def relative_position_buckets(length: int, num_buckets: int, max_distance: int) -> np.ndarray:
    """(length, length) bidirectional buckets of key - query offsets, in transformers' float32 arithmetic."""
    offsets = np.arange(length)[None, :] - np.arange(length)[:, None]
    half = num_buckets // 2
    buckets = (offsets > 0).astype(np.int64) * half
    distance = np.abs(offsets)
    max_exact = half // 2
    with np.errstate(divide="ignore"):
        scaled = (
            np.log(distance.astype(np.float32) / np.float32(max_exact))
            / np.float32(math.log(max_distance / max_exact))
            * np.float32(half - max_exact)
        )
    large = np.minimum(max_exact + np.where(distance < max_exact, 0, scaled).astype(np.int64), half - 1)
    return buckets + np.where(distance < max_exact, distance, large)


def position_bias(table: nn.Embedding, length: int, max_distance: int) -> mx.array:
    """(1, heads, length, length) learned bias of each key - query offset's bucket."""
    buckets = mx.array(relative_position_buckets(length, table.weight.shape[0], max_distance))
    return table(buckets).transpose(2, 0, 1)[None]


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.heads = args.num_heads
        inner = args.num_heads * args.d_kv
        self.q = nn.Linear(args.d_model, inner, bias=False)
        self.k = nn.Linear(args.d_model, inner, bias=False)
        self.v = nn.Linear(args.d_model, inner, bias=False)
        self.o = nn.Linear(inner, args.d_model, bias=False)

    def __call__(self, x: mx.array, bias: mx.array) -> mx.array:
        B, L, _ = x.shape
        q, k, v = (proj(x).reshape(B, L, self.heads, -1) for proj in (self.q, self.k, self.v))
        return self.o(attention(q, k, v, 1.0, bias).reshape(B, L, -1))  # T5 does not scale scores


class FeedForward(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.gated = args.feed_forward_proj == "gated-gelu"
        if self.gated:
            self.wi_0 = nn.Linear(args.d_model, args.d_ff, bias=False)
            self.wi_1 = nn.Linear(args.d_model, args.d_ff, bias=False)
        else:
            self.wi = nn.Linear(args.d_model, args.d_ff, bias=False)
        self.wo = nn.Linear(args.d_ff, args.d_model, bias=False)

    def __call__(self, x: mx.array) -> mx.array:
        if self.gated:
            return self.wo(nn.gelu_approx(self.wi_0(x)) * self.wi_1(x))
        return self.wo(nn.relu(self.wi(x)))


class Block(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention_norm = nn.RMSNorm(args.d_model, eps=args.layer_norm_epsilon)
        self.attention = Attention(args)
        self.ff_norm = nn.RMSNorm(args.d_model, eps=args.layer_norm_epsilon)
        self.ff = FeedForward(args)

    def __call__(self, x: mx.array, bias: mx.array) -> mx.array:
        x = x + self.attention(self.attention_norm(x), bias)
        return x + self.ff(self.ff_norm(x))


class T5Encoder(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.shared = nn.Embedding(args.vocab_size, args.d_model)
        self.relative_attention_bias = nn.Embedding(args.relative_attention_num_buckets, args.num_heads)
        self.blocks = [Block(args) for _ in range(args.num_layers)]
        self.final_norm = nn.RMSNorm(args.d_model, eps=args.layer_norm_epsilon)

    def __call__(self, ids: mx.array, attention_mask: mx.array) -> mx.array:
        """Final encoder states (B, L, d_model); padded keys (mask 0) are never attended to."""
        x = self.shared(ids)
        bias = (
            position_bias(self.relative_attention_bias, ids.shape[1], self.args.relative_attention_max_distance)
            + padding_bias(attention_mask, mx.float32)
        ).astype(x.dtype)
        for block in self.blocks:
            x = block(x, bias)
        return self.final_norm(x)

    def token_embeddings(self) -> nn.Embedding:
        return self.shared

    @staticmethod
    def sanitize(weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """HF T5EncoderModel / T5Model names -> these modules' names (decoder and lm_head dropped)."""
        if "shared.weight" not in weights and "encoder.embed_tokens.weight" in weights:
            weights = {**weights, "shared.weight": weights["encoder.embed_tokens.weight"]}
        renames = [
            (r"^encoder\.block\.0\.layer\.0\.SelfAttention\.relative_attention_bias", "relative_attention_bias"),
            (r"^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.", r"blocks.\1.attention."),
            (r"^encoder\.block\.(\d+)\.layer\.0\.layer_norm", r"blocks.\1.attention_norm"),
            (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.", r"blocks.\1.ff."),
            (r"^encoder\.block\.(\d+)\.layer\.1\.layer_norm", r"blocks.\1.ff_norm"),
            (r"^encoder\.final_layer_norm", "final_norm"),
        ]
        out = {}
        for name, value in weights.items():
            if name.startswith(("decoder.", "lm_head.", "encoder.embed_tokens.")):
                continue
            for pattern, replacement in renames:
                name = re.sub(pattern, replacement, name)
            out[name] = value
        return out
