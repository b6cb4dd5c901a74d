"""The Embedder interface every encoder backend implements."""

from __future__ import annotations

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
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a command-line argument that was not UTF-8 arrives this way
            raise InputError(f"text #{i} is not valid UTF-8 (at character {exc.start})") from None


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


def load_vector_file(path: str | Path) -> np.ndarray:
    """Vectors from .npy, or JSON (a list of rows, one row, or `meqg encode`'s {"vectors": ...})."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"vector file not found: {path}")
    if path.suffix == ".npy":
        try:
            vectors = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(f"{path} is not a readable .npy file ({exc})") from exc
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path} is not valid JSON ({exc})") from exc
        vectors = data["vectors"] if isinstance(data, dict) and "vectors" in data else data
    if not np.size(vectors):
        raise InputError(f"{path} holds no vectors")
    return vectors


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
