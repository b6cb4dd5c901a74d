"""The MLX MPNet encoder against transformers' PyTorch MPNet and sentence-transformers on a tiny MPNet."""

import mlx.core as mx
import numpy as np
import pytest
import torch

from meqg_mlx.encoder.mlx_encoder import MLXSentenceEncoder
from meqg_mlx.encoder.mpnet import MPNet

from .tiny_models import TEXTS, build_tiny_mpnet


@pytest.fixture(scope="module")
def tiny_mpnet(tmp_path_factory):
    return build_tiny_mpnet(tmp_path_factory.mktemp("mpnet"), seed=7)


def test_matches_transformers_and_sentence_transformers(tiny_mpnet):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer, MPNetModel

    st_dir, raw = tiny_mpnet
    tokenizer, model = AutoTokenizer.from_pretrained(raw), MPNetModel.from_pretrained(raw).eval()
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        states = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    mean = ((states * mask).sum(1) / mask.sum(1)).numpy()
    assert batch["input_ids"].shape[1] > 100  # long enough for the logarithmic position buckets
    assert np.allclose(MLXSentenceEncoder(st_dir, max_tokens=256, output="mean").encode(TEXTS), mean, atol=1e-5)
    expected = SentenceTransformer(str(st_dir), device="cpu").encode(TEXTS)
    encoder = MLXSentenceEncoder(st_dir, max_tokens=256)
    assert encoder.normalized and np.allclose(encoder.encode(TEXTS), expected, atol=1e-5)


def test_hf_names_map_onto_every_parameter(tiny_mpnet):
    st_dir, _ = tiny_mpnet
    encoder = MLXSentenceEncoder(st_dir)
    weights = mx.load(str(st_dir / "model.safetensors"))
    MPNet(encoder.args).load_weights(list(MPNet.sanitize(weights).items()), strict=True)
    assert encoder.word_embeddings().shape == (encoder.args.vocab_size, 32)
