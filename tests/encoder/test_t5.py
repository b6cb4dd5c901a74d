"""The MLX T5 encoder against transformers' PyTorch T5 on tiny T5s built here with random weights."""

import mlx.core as mx
import numpy as np
import pytest
import torch

from meqg_mlx.encoder.mlx_encoder import MLXSentenceEncoder
from meqg_mlx.encoder.t5 import T5Encoder, relative_position_buckets

from ..conftest import SENTENCES

TEXTS = ["Return the sorted list.", "Open a file and read it line by line, closing it afterwards.",
         "x", "The quick brown fox jumps over the lazy dog " * 12]


def build_tiny_gtr(directory, feed_forward_proj: str, seed: int):
    """A sentence-transformers dir shaped like gtr-t5-base (T5 encoder, mean pooling, Dense, Normalize)."""
    from pydoc_data.topics import topics
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    # a word-level vocabulary in sorted order: the same ids in every process (Unigram training is not)
    metaspace = pre_tokenizers.Metaspace()
    corpus = [topics[t] for t in sorted(topics)[:5]] + SENTENCES + TEXTS
    pieces = sorted({piece for text in corpus for piece, _ in metaspace.pre_tokenize_str(text)})
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {piece: 3 + i for i, piece in enumerate(pieces)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer, tokenizer.decoder = metaspace, decoders.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    torch.manual_seed(seed)
    config = T5Config(vocab_size=tokenizer.get_vocab_size(), d_model=32, d_kv=8, d_ff=64, num_layers=2,
                      num_heads=4, feed_forward_proj=feed_forward_proj, pad_token_id=0, eos_token_id=1)
    raw = directory / "raw"
    T5EncoderModel(config).save_pretrained(raw)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="</s>", pad_token="<pad>",
                            unk_token="<unk>").save_pretrained(raw)
    transformer = Transformer(str(raw), max_seq_length=256)
    model = SentenceTransformer(modules=[transformer, Pooling(32, "mean"),
                                         Dense(32, 24, bias=False, activation_function=torch.nn.Identity()),
                                         Normalize()], device="cpu")
    model.save(str(directory / "gtr"))
    return directory / "gtr", raw


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
