"""A BERT-family sentence encoder in PyTorch with `meqg_mlx/encoder/bert.py`'s modules and weight names,
for a fixed number of tokens: a static graph that `meqg export coreml` traces and converts.

tokens (1, L) int32 and their attention mask -> the sentence-transformers vector: mean or CLS
pooling, an optional Dense layer and normalisation, as the model directory's modules.json lists.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from meqg_mlx.encoder.bert import Bert, ModelArgs
from meqg_mlx.encoder.mlx_encoder import pooling_mode
from meqg_mlx.errors import MeqgError

MASKED = -1e4  # additive bias of a padded key: exp underflows to 0, and it stays finite in float16
POOLINGS = ("mean", "cls")


class Layer(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        d, self.heads = args.hidden_size, args.num_attention_heads
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.out = nn.Linear(d, d)
        self.attention_norm = nn.LayerNorm(d, eps=args.layer_norm_eps)
        self.intermediate = nn.Linear(d, args.intermediate_size)
        self.output = nn.Linear(args.intermediate_size, d)
        self.output_norm = nn.LayerNorm(d, eps=args.layer_norm_eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        q, k, v = (p(x).reshape(b, length, self.heads, -1).transpose(1, 2) for p in (self.query, self.key, self.value))
        scores = q @ k.transpose(-1, -2) * (d // self.heads) ** -0.5 + bias
        attended = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, length, d)
        x = self.attention_norm(x + self.out(attended))
        return self.output_norm(x + self.output(F.gelu(self.intermediate(x))))


class SentenceEncoder(nn.Module):
    """A local sentence-transformers directory (model_type bert) for inputs of exactly `length` tokens."""

    def __init__(self, model_dir: str | Path, length: int):
        super().__init__()
        model_dir = Path(model_dir)
        try:
            config = json.loads((model_dir / "config.json").read_text())
            modules = json.loads((model_dir / "modules.json").read_text())
            kinds = {m["type"].rsplit(".", 1)[-1]: model_dir / m["path"] for m in modules}
            self.pooling = pooling_mode(json.loads((kinds["Pooling"] / "config.json").read_text()), model_dir)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MeqgError(f"not a sentence-transformers model directory: {model_dir} ({exc})") from None
        if config.get("model_type") != "bert":
            raise MeqgError(
                f"{model_dir}: the Core ML export converts BERT-family encoders (model_type bert), "
                f"not {config.get('model_type')!r}"
            )
        if self.pooling not in POOLINGS or "Dense" in kinds:
            dense = " and a Dense layer" if "Dense" in kinds else ""
            raise MeqgError(f"{model_dir}: the Core ML export has no {self.pooling!r} pooling{dense} (mean, cls)")
        args = ModelArgs.from_config(config)
        if length > args.max_position_embeddings:
            raise MeqgError(f"{model_dir}: {length} tokens exceed its {args.max_position_embeddings} positions")
        self.args, self.length, self.normalized = args, length, "Normalize" in kinds
        self.word_embeddings = nn.Embedding(args.vocab_size, args.hidden_size)
        self.position_embeddings = nn.Embedding(args.max_position_embeddings, args.hidden_size)
        self.token_type_embeddings = nn.Embedding(args.type_vocab_size, args.hidden_size)
        self.norm = nn.LayerNorm(args.hidden_size, eps=args.layer_norm_eps)
        self.layers = nn.ModuleList(Layer(args) for _ in range(args.num_hidden_layers))
        self.register_buffer("positions", torch.arange(length), persistent=False)
        renamed = Bert.sanitize(_load(model_dir))  # MLX's names: embeddings.*, layers.N.attention.query, ...
        weights = {k.removeprefix("embeddings.").replace(".attention.", "."): v for k, v in renamed.items()}
        self.load_state_dict(weights, strict=True)
        self.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(1, length) token ids and mask (1 = token, 0 = padding) -> (1, dim) sentence vector."""
        x = self.word_embeddings(input_ids) + self.position_embeddings(self.positions)
        x = self.norm(x + self.token_type_embeddings.weight[0])
        mask = attention_mask.to(x.dtype)
        bias = (1.0 - mask)[:, None, None, :] * MASKED
        for layer in self.layers:
            x = layer(x, bias)
        if self.pooling == "cls":
            pooled = x[:, 0]
        else:
            pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1) if self.normalized else pooled


def _load(model_dir: Path) -> dict[str, torch.Tensor]:
    if (model_dir / "model.safetensors").is_file():
        return load_file(str(model_dir / "model.safetensors"))
    if (model_dir / "pytorch_model.bin").is_file():
        return torch.load(model_dir / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise MeqgError(f"no model.safetensors or pytorch_model.bin in {model_dir}")
