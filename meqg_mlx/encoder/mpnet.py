"""MPNet encoder in MLX (all-mpnet-base-v2 and its kin): BERT's post-norm layers (bert.Layer)
with T5-style relative position buckets added to the scaled scores; HF MPNetModel weights
renamed in `sanitize`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import mlx.core as mx
import mlx.nn as nn

from ..errors import InputError
from .bert import Layer, rename_weights
from .attention import padding_bias
from .t5 import position_bias


@dataclass
class ModelArgs:
    vocab_size: int = 30527
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 514
    relative_attention_num_buckets: int = 32
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 1

    @classmethod
    def from_config(cls, config: dict) -> "ModelArgs":
        if config.get("hidden_act", "gelu") != "gelu":
            raise InputError(f"unsupported hidden_act {config['hidden_act']!r} (MPNet's exact gelu only)")
        return cls(**{f.name: config[f.name] for f in fields(cls) if f.name in config})


class MPNet(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.word_embeddings = nn.Embedding(args.vocab_size, args.hidden_size)
        self.position_embeddings = nn.Embedding(args.max_position_embeddings, args.hidden_size)
        self.embedding_norm = nn.LayerNorm(args.hidden_size, eps=args.layer_norm_eps)
        self.relative_attention_bias = nn.Embedding(args.relative_attention_num_buckets, args.num_attention_heads)
        self.layers = [Layer(args) for _ in range(args.num_hidden_layers)]

    def __call__(self, ids: mx.array, attention_mask: mx.array) -> mx.array:
        """Token states (B, L, hidden) for right-padded ids; padded keys (mask 0) are never attended to."""
        length = ids.shape[1]
        positions = mx.arange(length) + self.args.pad_token_id + 1  # fairseq positions: real tokens count from pad+1
        x = self.embedding_norm(self.word_embeddings(ids) + self.position_embeddings(positions))
        bias = (
            position_bias(self.relative_attention_bias, length, 128) + padding_bias(attention_mask, mx.float32)
        ).astype(x.dtype)
        for layer in self.layers:
            x = layer(x, bias)
        return x

    def token_embeddings(self) -> nn.Embedding:
        return self.word_embeddings

    @staticmethod
    def sanitize(weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """HF MPNetModel names -> these modules' names (pooler and position_ids dropped)."""
        renames = [
            (r"^mpnet\.", ""),
            (r"^embeddings\.LayerNorm", "embedding_norm"),
            (r"^embeddings\.", ""),
            (r"^encoder\.relative_attention_bias", "relative_attention_bias"),
            (r"^encoder\.layer\.(\d+)\.attention\.attn\.q\.", r"layers.\1.attention.query."),
            (r"^encoder\.layer\.(\d+)\.attention\.attn\.k\.", r"layers.\1.attention.key."),
            (r"^encoder\.layer\.(\d+)\.attention\.attn\.v\.", r"layers.\1.attention.value."),
            (r"^encoder\.layer\.(\d+)\.attention\.attn\.o\.", r"layers.\1.attention.out."),
            (r"^encoder\.layer\.(\d+)\.attention\.LayerNorm", r"layers.\1.attention_norm"),
            (r"^encoder\.layer\.(\d+)\.intermediate\.dense", r"layers.\1.intermediate"),
            (r"^encoder\.layer\.(\d+)\.output\.dense", r"layers.\1.output"),
            (r"^encoder\.layer\.(\d+)\.output\.LayerNorm", r"layers.\1.output_norm"),
        ]
        return rename_weights(weights, renames, ("pooler.", "mpnet.pooler."))
