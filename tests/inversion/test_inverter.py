"""The inverter model file: cached generation equals recomputing the whole sequence; the prefix conditions it."""

import mlx.core as mx
import numpy as np

from meqg_mlx.inversion.inverter import Inverter, ModelArgs


def tiny_model(seed=0):
    mx.random.seed(seed)
    model = Inverter(
        ModelArgs(concept_dim=16, vocab_size=40, hidden=32, layers=2, heads=2, prefix_tokens=2, max_tokens=12)
    )
    mx.eval(model.parameters())
    return model


def test_generation_with_the_kv_cache_matches_full_recomputation():
    model = tiny_model()
    targets = mx.random.normal((3, 16))
    hypotheses = mx.random.normal((3, 16))
    cached = np.array(model.generate(targets, hypotheses, bos=1, eos=2))
    prefix = model.prefix(targets, hypotheses)
    tokens = mx.full((3, 1), 1, mx.int32)
    for step in range(cached.shape[1]):
        token = mx.argmax(model(tokens, prefix)[:, -1], axis=-1).astype(mx.int32)
        finished = (np.array(tokens[:, 1:]) == 2).any(axis=1)
        expected = np.where(finished, 2, np.array(token))
        assert (cached[:, step] == expected).all(), step
        tokens = mx.concatenate([tokens, mx.array(expected[:, None], dtype=mx.int32)], axis=1)


def test_the_prefix_conditions_the_logits_and_sampling_follows_the_key():
    model = tiny_model()
    tokens = mx.full((1, 3), 5, mx.int32)
    a, b = mx.random.normal((1, 16)), mx.random.normal((1, 16))
    zero = mx.zeros((1, 16))
    assert not np.allclose(model(tokens, model.prefix(a, zero)), model(tokens, model.prefix(b, zero)))
    assert not np.allclose(model(tokens, model.prefix(a, zero)), model(tokens, model.prefix(a, b)))
    one = model.generate(a, zero, 1, 2, temperature=1.0, key=mx.random.key(3))
    again = model.generate(a, zero, 1, 2, temperature=1.0, key=mx.random.key(3))
    assert np.array_equal(np.array(one), np.array(again))
