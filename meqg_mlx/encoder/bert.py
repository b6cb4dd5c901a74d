"""BERT-family encoder in MLX (all-MiniLM-L6-v2 and its kin): HF BertModel weights renamed
in `sanitize`. `mlx_encoder.MLXSentenceEncoder` adds pooling and normalisation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

import mlx.core as mx
import mlx.nn as nn

from ..errors import InputError
from ..kernels.activations import gelu
from ..kernels.norm import residual_layer_norm
from .attention import attention, padding_bias


def rename_weights(
    weights: dict[str, mx.array], renames: list[tuple[str, str]], dropped: tuple[str, ...]
) -> dict[str, mx.array]:
    """HF weight names through `renames` (regex, replacement) in order; position_ids and names
    starting with `dropped` (poolers) left out. BERT-style models' `sanitize` share it."""
    out = {}
    for name, value in weights.items():
        if name.endswith("position_ids") or name.startswith(dropped):
            continue
        for pattern, replacement in renames:
            name = re.sub(pattern, replacement, name)
        out[name] = value
    return out


@dataclass
class ModelArgs:
    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_config(cls, config: dict) -> "ModelArgs":
        if config.get("hidden_act", "gelu") != "gelu":
            raise InputError(f"unsupported hidden_act {config['hidden_act']!r} (BERT's exact gelu only)")
        return cls(**{f.name: config[f.name] for f in fields(cls) if f.name in config})


class Embeddings(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.word_embeddings = nn.Embedding(args.vocab_size, args.hidden_size)
        self.position_embeddings = nn.Embedding(args.max_position_embeddings, args.hidden_size)
        self.token_type_embeddings = nn.Embedding(args.type_vocab_size, args.hidden_size)
        self.norm = nn.LayerNorm(args.hidden_size, eps=args.layer_norm_eps)

    def __call__(self, ids: mx.array) -> mx.array:
        x = self.word_embeddings(ids) + self.position_embeddings(mx.arange(ids.shape[1]))
        return self.norm(x + self.token_type_embeddings.weight[0])


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.heads = args.num_attention_heads
        self.scale = (args.hidden_size // self.heads) ** -0.5
        self.query = nn.Linear(args.hidden_size, args.hidden_size)
        self.key = nn.Linear(args.hidden_size, args.hidden_size)
        self.value = nn.Linear(args.hidden_size, args.hidden_size)
        self.out = nn.Linear(args.hidden_size, args.hidden_size)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        """The heads' outputs, concatenated: `out` projects them inside the layer's residual norm."""
        B, L, D = x.shape
        q, k, v = (proj(x).reshape(B, L, self.heads, -1) for proj in (self.query, self.key, self.value))
        return attention(q, k, v, self.scale, mask).reshape(B, L, D)


class Layer(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention = Attention(args)
        self.attention_norm = nn.LayerNorm(args.hidden_size, eps=args.layer_norm_eps)
        self.intermediate = nn.Linear(args.hidden_size, args.intermediate_size)
        self.output = nn.Linear(args.intermediate_size, args.hidden_size)
        self.output_norm = nn.LayerNorm(args.hidden_size, eps=args.layer_norm_eps)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        x = residual_norm(x, self.attention(x, mask), self.attention.out, self.attention_norm)
        return residual_norm(x, gelu(self.intermediate(x)), self.output, self.output_norm)


def residual_norm(x: mx.array, inputs: mx.array, linear: nn.Linear, norm: nn.LayerNorm) -> mx.array:
    """norm(x + linear(inputs)), BERT's post-norm residual: the projection without its bias, then
    bias, residual and LayerNorm in one pass (a CPU kernel; mx.fast.layer_norm elsewhere)."""
    return residual_layer_norm(x, inputs @ linear.weight.T, linear.bias, norm.weight, norm.bias, norm.eps)


class Bert(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.embeddings = Embeddings(args)
        self.layers = [Layer(args) for _ in range(args.num_hidden_layers)]

    def __call__(self, ids: mx.array, attention_mask: mx.array) -> mx.array:
        """Token states (B, L, hidden); padded keys (mask 0) are never attended to."""
        x = self.embeddings(ids)
        additive = padding_bias(attention_mask, x.dtype)
        for layer in self.layers:
            x = layer(x, additive)
        return x

    def token_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    @staticmethod
    def sanitize(weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """HF BertModel names -> these modules' names (pooler and position_ids dropped)."""
        renames = [
            (r"^bert\.", ""),
            (r"embeddings\.LayerNorm", "embeddings.norm"),
            (r"encoder\.layer\.(\d+)\.attention\.self\.", r"layers.\1.attention."),
            (r"encoder\.layer\.(\d+)\.attention\.output\.dense", r"layers.\1.attention.out"),
            (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm", r"layers.\1.attention_norm"),
            (r"encoder\.layer\.(\d+)\.intermediate\.dense", r"layers.\1.intermediate"),
            (r"encoder\.layer\.(\d+)\.output\.dense", r"layers.\1.output"),
            (r"encoder\.layer\.(\d+)\.output\.LayerNorm", r"layers.\1.output_norm"),
        ]
        renamed = rename_weights(weights, renames, ("pooler.", "bert.pooler."))
        return {name.replace(".gamma", ".weight").replace(".beta", ".bias"): v for name, v in renamed.items()}
