"""A local sentence-transformers directory run in MLX: the model file its config.json's
model_type names (bert.py, mpnet.py, t5.py), then the pooling, Dense and Normalize modules that
its modules.json lists, so the vectors match the PyTorch reference.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..errors import InputError
from . import bert, mpnet, t5
from .base import check_texts, load_tokenizer
from .sentence_transformers import length_buckets

MODELS = {
    "bert": (bert.ModelArgs, bert.Bert),
    "mpnet": (mpnet.ModelArgs, mpnet.MPNet),
    "t5": (t5.ModelArgs, t5.T5Encoder),
}
DENSE_ACTIVATIONS = {"torch.nn.modules.linear.Identity": None, "torch.nn.modules.activation.Tanh": mx.tanh}
OUTPUTS = ("sentence", "mean")


def load_weights(directory: Path) -> dict[str, mx.array]:
    """model.safetensors, or a PyTorch pytorch_model.bin (older sentence-transformers releases)."""
    if (directory / "model.safetensors").is_file():
        return mx.load(str(directory / "model.safetensors"))
    if (directory / "pytorch_model.bin").is_file():
        import torch

        state = torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
        return {name: mx.array(value.float().numpy()) for name, value in state.items()}
    raise InputError(f"no model.safetensors or pytorch_model.bin in {directory}")


def pool(states: mx.array, attention_mask: mx.array, mode: str) -> mx.array:
    mask = attention_mask[..., None].astype(states.dtype)
    if mode == "mean":
        return (states * mask).sum(axis=1) / mx.maximum(mask.sum(axis=1), 1e-9)
    if mode == "cls":
        return states[:, 0]
    if mode == "max":
        return mx.where(mask > 0, states, -1e9).max(axis=1)
    raise ValueError(f"pooling {mode!r}")


class Dense(nn.Module):
    """sentence-transformers' Dense module (2_Dense): a linear map and an optional tanh."""

    def __init__(self, directory: Path):
        super().__init__()
        config = json.loads((directory / "config.json").read_text())
        activation = config.get("activation_function", "torch.nn.modules.linear.Identity")
        if activation not in DENSE_ACTIVATIONS:
            raise InputError(f"{directory}: unsupported Dense activation {activation}")
        self.activation = DENSE_ACTIVATIONS[activation]
        self.linear = nn.Linear(config["in_features"], config["out_features"], bias=config.get("bias", True))
        self.load_weights(list(load_weights(directory).items()), strict=True)

    def __call__(self, x: mx.array) -> mx.array:
        x = self.linear(x)
        return self.activation(x) if self.activation else x


def pooling_mode(config: dict, directory: Path) -> str:
    """1_Pooling/config.json: sentence-transformers 6 writes `pooling_mode`, older releases one flag per mode."""
    if "pooling_mode" in config:
        return str(config["pooling_mode"])
    keys = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens"}
    modes = [mode for mode, key in keys.items() if config.get(key)]
    if len(modes) != 1:
        raise InputError(f"{directory}: one pooling mode expected, config names {modes or 'none'}")
    return modes[0]


class MLXSentenceEncoder:
    """Texts -> float32 rows with the same numbers as sentence-transformers, computed in MLX.

    output="sentence" is the sentence-transformers vector (pooling, Dense, Normalize as
    modules.json lists them); output="mean" is the unnormalised mean of the final encoder
    states, what vec2text's GTR inverters were trained on.
    """

    # 64 x 128-token MiniLM batches made 50 MB activations: above glibc's 32 MiB buffer reuse
    # (backend.keep_freed_buffers) every op page-faulted them in again; 28 -> 38 long sentences/s.
    BATCH_TOKENS = 4096

    def __init__(
        self,
        model_dir: str | Path,
        name: str | None = None,
        max_tokens: int = 128,
        batch_size: int = 64,
        dtype: mx.Dtype = mx.float32,
        output: str = "sentence",
    ):
        model_dir = Path(model_dir)
        if output not in OUTPUTS:
            raise InputError(f"unknown encoder output {output!r} (sentence, mean)")
        try:
            modules = json.loads((model_dir / "modules.json").read_text())
            config = json.loads((model_dir / "config.json").read_text())
            kinds = {m["type"].rsplit(".", 1)[-1]: model_dir / m["path"] for m in modules}
            pooling = pooling_mode(json.loads((kinds["Pooling"] / "config.json").read_text()), model_dir)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"not a sentence-transformers model directory: {model_dir} ({exc})") from exc
        if config.get("model_type") not in MODELS:
            raise InputError(
                f"{model_dir}: model_type {config.get('model_type')!r} is not supported in MLX "
                f"({', '.join(MODELS)}); use --backend torch"
            )
        args_class, model_class = MODELS[config["model_type"]]
        self.args = args_class.from_config(config)
        self.model = model_class(self.args)
        self.model.load_weights(list(model_class.sanitize(load_weights(model_dir)).items()), strict=True)
        self.output = output
        if pooling not in ("mean", "cls", "max"):
            raise InputError(f"{model_dir}: unsupported pooling {pooling!r} (mean, cls, max)")
        self.pooling = "mean" if output == "mean" else pooling
        self.dense = Dense(kinds["Dense"]) if output == "sentence" and "Dense" in kinds else None
        self.normalized = output == "sentence" and "Normalize" in kinds
        if dtype != mx.float32:
            self.model.set_dtype(dtype)
        mx.eval(self.model.parameters())
        self.tokenizer = load_tokenizer(model_dir / "tokenizer.json")
        self.tokenizer.enable_truncation(
            max_length=min(max_tokens, getattr(self.args, "max_position_embeddings", max_tokens))
        )
        base_name = name or model_dir.name
        self.model_dir, self.name = model_dir, base_name if output == "sentence" else f"{base_name}:mean"
        self.dim = self.dense.linear.weight.shape[0] if self.dense else self.args.hidden_size
        self.batch_size, self.dtype = batch_size, dtype

    def encode(self, texts: list[str]) -> np.ndarray:
        check_texts(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(texts)
        lengths = np.array([len(e.ids) for e in encodings])
        for batch in length_buckets(lengths, self.batch_size, self.BATCH_TOKENS):
            width = int(lengths[batch].max())
            ids = np.zeros((len(batch), width), np.int32)
            mask = np.zeros((len(batch), width), np.int32)
            for row, i in enumerate(batch):
                ids[row, : lengths[i]], mask[row, : lengths[i]] = encodings[i].ids, 1
            mask_array = mx.array(mask)
            vectors = pool(self.model(mx.array(ids), mask_array), mask_array, self.pooling).astype(mx.float32)
            if self.dense is not None:
                vectors = self.dense(vectors)
            if self.normalized:
                vectors = vectors / mx.maximum(mx.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            out[batch] = np.array(vectors)
        return out

    @property
    def tokenizer_path(self) -> Path:
        return self.model_dir / "tokenizer.json"

    def word_embeddings(self) -> np.ndarray:
        """The input token embedding table (tokenizer vocab, d): the inverter starts from it."""
        return np.array(self.model.token_embeddings().weight.astype(mx.float32))

    def token_lengths(self, texts: list[str]) -> np.ndarray:
        return np.array([len(e.ids) for e in self.tokenizer.encode_batch(texts)], dtype=np.int64)
