"""The inverter model file: cached generation equals recomputing the whole sequence; the prefix conditions it."""

import mlx.core as mx
import numpy as np
import pytest

from meqg_mlx.inversion.inverter import Inverter, ModelArgs, sample_rows


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


def test_the_prefix_conditions_the_logits():
    model = tiny_model()
    tokens = mx.full((1, 3), 5, mx.int32)
    a, b = mx.random.normal((1, 16)), mx.random.normal((1, 16))
    zero = mx.zeros((1, 16))
    assert not np.allclose(model(tokens, model.prefix(a, zero)), model(tokens, model.prefix(b, zero)))
    assert not np.allclose(model(tokens, model.prefix(a, zero)), model(tokens, model.prefix(a, b)))


def test_a_rows_samples_follow_its_own_seed_whatever_the_batch():
    model = tiny_model()
    targets, zero = mx.random.normal((3, 16)), mx.zeros((3, 16))
    seeds = np.array([11, 12, 13], np.uint64)
    batch = np.array(model.generate(targets, zero, 1, 2, temperature=1.5, seeds=seeds))
    for row in range(3):
        alone = np.array(model.generate(targets[row : row + 1], zero[:1], 1, 2, 1.5, seeds[row : row + 1]))
        width = min(alone.shape[1], batch.shape[1])
        assert np.array_equal(alone[0, :width], batch[row, :width]), row
    other = np.array(model.generate(targets, zero, 1, 2, temperature=1.5, seeds=seeds + 100))
    assert not np.array_equal(other, batch)  # the seed decides the samples
    with pytest.raises(ValueError, match="one seed per row"):
        model.generate(targets, zero, 1, 2, temperature=1.0)


def test_sampled_tokens_follow_the_softmax():
    logits = mx.array([[2.0, 0.0, -1.0, 1.0, -3.0]])
    expected = np.exp(np.array(logits[0]) / 0.7)
    expected /= expected.sum()
    n = 20000
    tokens = np.array(sample_rows(mx.repeat(logits, n, axis=0), 0.7, np.arange(n, dtype=np.uint64), 0))
    frequencies = np.bincount(tokens, minlength=5) / n
    # 4 standard errors of a binomial frequency at n = 20000
    assert np.all(np.abs(frequencies - expected) <= 4 * np.sqrt(expected * (1 - expected) / n) + 1e-9)
