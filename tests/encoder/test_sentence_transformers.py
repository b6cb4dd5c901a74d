import numpy as np
import pytest

from meqg_mlx.concepts.sources.prose import pydoc_topics
from meqg_mlx.encoder.sentence_transformers import length_buckets
from meqg_mlx.errors import InputError


def test_length_buckets_cover_every_index_once_sorted_by_length():
    lengths = np.array([5, 1, 9, 3, 3, 7, 2])
    buckets = length_buckets(lengths, 3)
    assert sorted(np.concatenate(buckets).tolist()) == list(range(7))
    assert [lengths[b].max() for b in buckets] == sorted(lengths[b].max() for b in buckets)
    capped = length_buckets(lengths, 3, max_tokens=10)  # rows x longest <= 10, one row at least
    assert [b.tolist() for b in capped] == [[1, 6, 3], [4, 0], [5], [2]]


def test_bucketed_encoding_equals_sentence_transformers(reference_embedder):
    texts = [r.text for r in pydoc_topics()][:300:3]
    ours = reference_embedder.encode(texts)
    reference = reference_embedder.model.encode(texts, batch_size=64, normalize_embeddings=True)
    assert ours.shape == (100, 384) and ours.dtype == np.float32
    assert np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)
    assert float(np.min(np.sum(ours * reference, axis=1))) > 0.99999


def test_empty_or_non_string_text_is_refused(reference_embedder):
    with pytest.raises(InputError, match="text #1 is empty"):
        reference_embedder.encode(["fine", "   "])
    with pytest.raises(InputError, match="text #0 is int"):
        reference_embedder.encode([3])
    assert reference_embedder.encode([]).shape == (0, 384)
