"""The MLX T5 encoder against transformers' PyTorch T5 on tiny T5s built here with random weights."""

import mlx.core as mx
import numpy as np
import pytest
import torch

from meqg_mlx.encoder.mlx_encoder import MLXSentenceEncoder
from meqg_mlx.encoder.t5 import T5Encoder, relative_position_buckets

from .tiny_models import TEXTS, build_tiny_gtr


@pytest.fixture(scope="module", params=["relu", "gated-gelu"])
def tiny_gtr(request, tmp_path_factory):
    return build_tiny_gtr(tmp_path_factory.mktemp(request.param), request.param, seed=len(request.param))


def test_mean_output_is_transformers_mean_pooled_encoder_output(tiny_gtr):
    from transformers import AutoTokenizer, T5EncoderModel

    gtr, raw = tiny_gtr
    tokenizer, model = AutoTokenizer.from_pretrained(raw), T5EncoderModel.from_pretrained(raw).eval()
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        states = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    expected = ((states * mask).sum(1) / mask.sum(1)).numpy()
    ours = MLXSentenceEncoder(gtr, max_tokens=512, output="mean").encode(TEXTS)
    assert batch["input_ids"].shape[1] > 100  # long enough for the logarithmic position buckets
    assert np.allclose(ours, expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(np.linalg.norm(ours, axis=1), 1.0)  # unnormalised, as vec2text expects


def test_sentence_output_matches_sentence_transformers(tiny_gtr):
    from sentence_transformers import SentenceTransformer

    gtr, _ = tiny_gtr
    expected = SentenceTransformer(str(gtr), device="cpu").encode(TEXTS, normalize_embeddings=False)
    encoder = MLXSentenceEncoder(gtr, max_tokens=256)
    ours = encoder.encode(TEXTS)
    assert encoder.dim == 24 and encoder.normalized and encoder.name == "gtr"
    assert np.allclose(ours, expected, atol=1e-5)
    assert MLXSentenceEncoder(gtr, output="mean").name == "gtr:mean"


def test_position_buckets_equal_transformers():
    from transformers.models.t5.modeling_t5 import T5Attention

    length = 600
    offsets = torch.arange(length)[None, :] - torch.arange(length)[:, None]
    expected = T5Attention._relative_position_bucket(offsets, bidirectional=True, num_buckets=32, max_distance=128)
    assert np.array_equal(relative_position_buckets(length, 32, 128), expected.numpy())


def test_hf_names_map_onto_every_parameter(tiny_gtr):
    gtr, _ = tiny_gtr
    encoder = MLXSentenceEncoder(gtr)
    weights = mx.load(str(gtr / "model.safetensors"))
    T5Encoder(encoder.args).load_weights(list(T5Encoder.sanitize(weights).items()), strict=True)
