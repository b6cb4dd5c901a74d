"""Text -> unit concept vectors."""

from .base import Embedder, check_vectors, default_embedder
from .sentence_transformers import SentenceTransformerEmbedder

__all__ = ["Embedder", "SentenceTransformerEmbedder", "check_vectors", "default_embedder"]
