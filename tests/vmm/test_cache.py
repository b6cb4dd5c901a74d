"""Decoding with a cache: the whole sequence's forward, one concept (or piece) at a time."""

import dataclasses

import mlx.core as mx
import numpy as np
import pytest

from meqg_mlx.vmm.model import VMM

from .test_model import TINY

ARGS = dataclasses.replace(TINY, context_lags=3, next_correction=True)  # chunk_size 4


@pytest.fixture
def model():
    """A VMM whose next-concept head depends on h and on the context (not the untrained repeat-last)."""
    rng = np.random.default_rng(0)
    mx.random.seed(0)
    model = VMM(ARGS)
    model.next_head.mix.weight = mx.array(rng.normal(scale=0.5, size=model.next_head.mix.weight.shape), mx.float32)
    weight = model.next_head.correction.weight
    model.next_head.correction.weight = mx.array(rng.normal(scale=0.05, size=weight.shape), mx.float32)
    return model


def concepts(batch, length, seed=1):
    x = np.random.default_rng(seed).normal(size=(batch, length, ARGS.concept_dim)).astype(np.float32)
    return mx.array(x / np.linalg.norm(x, axis=-1, keepdims=True))


def gap(pieces, whole) -> float:
    return float(mx.abs(mx.concatenate(pieces, axis=1) - whole).max())


@pytest.mark.parametrize("length", [1, 3, 4, 5, 11])  # chunk_size 4: within one chunk and across 1-2 boundaries
def test_one_concept_at_a_time_equals_the_whole_forward(model, length):
    x = concepts(2, length)
    whole = model(x)
    cache = model.make_cache()
    steps = [model(x[:, t : t + 1], cache=cache) for t in range(length)]
    assert gap([s.next_vector for s in steps], whole.next_vector) <= 1e-5
    assert gap([s.hidden for s in steps], whole.hidden) <= 1e-5
    assert cache.offset == length


def test_pieces_of_any_length_continue_the_sequence(model):
    x = concepts(1, 13)
    whole = model(x)
    cache = model.make_cache()
    pieces = [model(x[:, a:b], cache=cache) for a, b in ((0, 6), (6, 7), (7, 13))]  # chunked prefill, step, chunk
    assert gap([p.next_vector for p in pieces], whole.next_vector) <= 1e-5
    assert gap([p.hidden for p in pieces], whole.hidden) <= 1e-5


def test_a_copy_forks_the_sequence(model):
    x, y = concepts(1, 6), concepts(1, 2, seed=2)
    cache = model.make_cache()
    model(x, cache=cache)
    fork = cache.copy()
    forked = model(y, cache=fork)
    assert gap([forked.next_vector], model(mx.concatenate([x, y], axis=1)).next_vector[:, 6:]) <= 1e-5
    assert cache.offset == 6 and fork.offset == 8  # the original still ends after x
    again = model(y[:, :1], cache=cache)
    assert gap([again.hidden], forked.hidden[:, :1]) <= 1e-6


def test_the_cache_does_not_grow_with_the_context(model):
    cache = model.make_cache()
    model(concepts(1, 5), cache=cache)
    sizes = [(layer.conv.state.shape, layer.ssm.shape) for layer in cache.layers]
    model(concepts(1, 40, seed=3), cache=cache)
    assert [(layer.conv.state.shape, layer.ssm.shape) for layer in cache.layers] == sizes
    assert cache.concepts.state.shape == (1, ARGS.context_lags - 1, ARGS.concept_dim)
