"""Tiny sentence-transformers directories with random weights, built and saved locally (no hub):
the shapes of gtr-t5-base and all-mpnet-base-v2 at a fraction of their size."""

import torch

from ..conftest import SENTENCES

TEXTS = [
    "Return the sorted list.",
    "Open a file and read it line by line, closing it afterwards.",
    "x",
    "The quick brown fox jumps over the lazy dog " * 12,
]


def word_level_tokenizer(specials: list[str], template: str):
    """A word-level vocabulary in sorted order: the same ids in every process (Unigram training is not)."""
    from pydoc_data.topics import topics
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    metaspace = pre_tokenizers.Metaspace()
    corpus = [topics[t] for t in sorted(topics)[:5]] + SENTENCES + TEXTS
    pieces = sorted({piece for text in corpus for piece, _ in metaspace.pre_tokenize_str(text)})
    vocab = {token: i for i, token in enumerate(specials)} | {p: len(specials) + i for i, p in enumerate(pieces)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer, tokenizer.decoder = metaspace, decoders.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(t, vocab[t]) for t in specials if t in template]
    )
    return tokenizer


def save_sentence_transformer(directory, name: str, model, tokenizer, dense: int | None, **special_tokens):
    """The HF model and tokenizer in NAME-raw/; a sentence-transformers dir in NAME/ (mean pooling, [Dense],
    Normalize)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
    from transformers import PreTrainedTokenizerFast

    raw = directory / f"{name}-raw"
    model.save_pretrained(raw)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, **special_tokens).save_pretrained(raw)
    width = model.config.hidden_size
    modules = [Transformer(str(raw), max_seq_length=256), Pooling(width, "mean")]
    if dense:
        modules.append(Dense(width, dense, bias=False, activation_function=torch.nn.Identity()))
    SentenceTransformer(modules=[*modules, Normalize()], device="cpu").save(str(directory / name))
    return directory / name, raw


def build_tiny_gtr(directory, feed_forward_proj: str, seed: int):
    """Shaped like gtr-t5-base: T5 encoder, mean pooling, Dense (32 -> 24), Normalize."""
    from transformers import T5Config, T5EncoderModel

    tokenizer = word_level_tokenizer(["<pad>", "</s>", "<unk>"], "$A </s>")
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=tokenizer.get_vocab_size(),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        feed_forward_proj=feed_forward_proj,
        pad_token_id=0,
        eos_token_id=1,
    )
    return save_sentence_transformer(
        directory,
        "gtr",
        T5EncoderModel(config),
        tokenizer,
        dense=24,
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def build_tiny_mpnet(directory, seed: int):
    """Shaped like all-mpnet-base-v2: MPNet, mean pooling, Normalize."""
    from transformers import MPNetConfig, MPNetModel

    tokenizer = word_level_tokenizer(["<s>", "<pad>", "</s>", "<unk>"], "<s> $A </s>")
    torch.manual_seed(seed)
    config = MPNetConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=300,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    return save_sentence_transformer(
        directory,
        "mpnet",
        MPNetModel(config),
        tokenizer,
        dense=None,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
