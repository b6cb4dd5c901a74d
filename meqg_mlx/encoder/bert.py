"""BERT-family sentence encoder in MLX (all-MiniLM-L6-v2 and its kin), loaded from a local
sentence-transformers directory: HF weights renamed in `sanitize`, the pooling its
1_Pooling/config.json names, unit rows when modules.json has a Normalize module.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..errors import InputError
from .base import check_texts, load_tokenizer
from .sentence_transformers import length_buckets


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
        B, L, D = x.shape
        q, k, v = (proj(x).reshape(B, L, self.heads, -1).transpose(0, 2, 1, 3)
                   for proj in (self.query, self.key, self.value))
        o = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale, mask=mask)
        return self.out(o.transpose(0, 2, 1, 3).reshape(B, L, D))


class Layer(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention = Attention(args)
        self.attention_norm = nn.LayerNorm(args.hidden_size, eps=args.layer_norm_eps)
        self.intermediate = nn.Linear(args.hidden_size, args.intermediate_size)
        self.output = nn.Linear(args.intermediate_size, args.hidden_size)
        self.output_norm = nn.LayerNorm(args.hidden_size, eps=args.layer_norm_eps)

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        x = self.attention_norm(x + self.attention(x, mask))
        return self.output_norm(x + self.output(nn.gelu(self.intermediate(x))))


class Bert(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.embeddings = Embeddings(args)
        self.layers = [Layer(args) for _ in range(args.num_hidden_layers)]

    def __call__(self, ids: mx.array, attention_mask: mx.array) -> mx.array:
        """Token states (B, L, hidden); padded keys (mask 0) are never attended to."""
        x = self.embeddings(ids)
        additive = mx.where(attention_mask[:, None, None, :].astype(mx.bool_), 0.0, -1e9).astype(x.dtype)
        for layer in self.layers:
            x = layer(x, additive)
        return x

    @staticmethod
    def sanitize(weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """HF BertModel names -> these modules' names (pooler and position_ids dropped)."""
        renames = [(r"^bert\.", ""), (r"embeddings\.LayerNorm", "embeddings.norm"),
                   (r"encoder\.layer\.(\d+)\.attention\.self\.", r"layers.\1.attention."),
                   (r"encoder\.layer\.(\d+)\.attention\.output\.dense", r"layers.\1.attention.out"),
                   (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm", r"layers.\1.attention_norm"),
                   (r"encoder\.layer\.(\d+)\.intermediate\.dense", r"layers.\1.intermediate"),
                   (r"encoder\.layer\.(\d+)\.output\.dense", r"layers.\1.output"),
                   (r"encoder\.layer\.(\d+)\.output\.LayerNorm", r"layers.\1.output_norm")]
        out = {}
        for name, value in weights.items():
            if name.endswith("position_ids") or name.startswith(("pooler.", "bert.pooler.")):
                continue
            for pattern, replacement in renames:
                name = re.sub(pattern, replacement, name)
            out[name.replace(".gamma", ".weight").replace(".beta", ".bias")] = value
        return out


def pool(states: mx.array, attention_mask: mx.array, mode: str) -> mx.array:
    mask = attention_mask[..., None].astype(states.dtype)
    if mode == "mean":
        return (states * mask).sum(axis=1) / mx.maximum(mask.sum(axis=1), 1e-9)
    if mode == "cls":
        return states[:, 0]
    if mode == "max":
        return mx.where(mask > 0, states, -1e9).max(axis=1)
    raise InputError(f"unsupported pooling {mode!r} (mean, cls, max)")


class MLXSentenceEncoder:
    """A sentence-transformers BERT/MiniLM directory run in MLX; same vectors as the PyTorch reference."""

    def __init__(self, model_dir: str | Path, name: str | None = None, max_tokens: int = 128,
                 batch_size: int = 64, dtype: mx.Dtype = mx.float32):
        model_dir = Path(model_dir)
        try:
            modules = json.loads((model_dir / "modules.json").read_text())
            config = json.loads((model_dir / "config.json").read_text())
            self.args = ModelArgs.from_config(config)
            pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"not a sentence-transformers BERT directory: {model_dir} ({exc})") from exc
        modes = [m for m in ("mean", "cls", "max") if pooling.get(f"pooling_mode_{m}_tokens" if m != "cls"
                                                                  else "pooling_mode_cls_token")]
        if len(modes) != 1:
            raise InputError(f"{model_dir}: one pooling mode expected, config names {modes or 'none'}")
        self.pooling = modes[0]
        self.normalize = any(m["type"].endswith("Normalize") for m in modules)
        self.model = Bert(self.args)
        self.model.load_weights(list(Bert.sanitize(mx.load(str(model_dir / "model.safetensors"))).items()),
                                strict=True)
        if dtype != mx.float32:
            self.model.set_dtype(dtype)
        mx.eval(self.model.parameters())
        self.tokenizer = load_tokenizer(model_dir / "tokenizer.json")
        self.tokenizer.enable_truncation(max_length=min(max_tokens, self.args.max_position_embeddings))
        self.model_dir, self.name, self.dim = model_dir, name or model_dir.name, self.args.hidden_size
        self.batch_size, self.dtype = batch_size, dtype

    def encode(self, texts: list[str]) -> np.ndarray:
        check_texts(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(texts)
        lengths = np.array([len(e.ids) for e in encodings])
        for batch in length_buckets(lengths, self.batch_size):
            width = int(lengths[batch].max())
            ids = np.zeros((len(batch), width), np.int32)
            mask = np.zeros((len(batch), width), np.int32)
            for row, i in enumerate(batch):
                ids[row, :lengths[i]], mask[row, :lengths[i]] = encodings[i].ids, 1
            mask_array = mx.array(mask)
            vectors = pool(self.model(mx.array(ids), mask_array), mask_array, self.pooling).astype(mx.float32)
            if self.normalize:
                vectors = vectors / mx.maximum(mx.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            out[batch] = np.array(vectors)
        return out
