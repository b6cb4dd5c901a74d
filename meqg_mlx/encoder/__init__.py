"""Text -> concept vectors: MLX ports of sentence encoders, sentence-transformers as the reference."""

from .base import Embedder, check_vectors
from .factory import choose_backend, default_embedder, embedder_from_config, load_embedder

__all__ = ["Embedder", "check_vectors", "choose_backend", "default_embedder", "embedder_from_config", "load_embedder"]
