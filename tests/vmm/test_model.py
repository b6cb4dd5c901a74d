import dataclasses
from dataclasses import replace

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from meqg_mlx.diamond.ledger import s_mod_exact
from meqg_mlx.diamond.view import View
from meqg_mlx.vmm.model import VMM, Memory, ModelArgs, NextConceptHead

TINY = ModelArgs(
    concept_dim=16,
    d_model=32,
    n_layers=2,
    d_state=8,
    expand=2,
    head_dim=16,
    chunk_size=4,
    n_experts=4,
    top_k=2,
    d_ff=32,
    rvq_levels=2,
    rvq_codes=3,
    memory_slots=0,
)


def unit(shape, seed=0):
    x = mx.random.normal(shape, key=mx.random.key(seed))
    return x / mx.linalg.norm(x, axis=-1, keepdims=True)


def test_untrained_model_starts_near_the_last_concept():
    """The mixture starts on the current concept; the generated vector starts with a small share."""
    mx.random.seed(8)
    x = unit((1, 5, 16), seed=9)
    copying = (VMM(replace(TINY, next_generator=False))(x).next_vector * x).sum(-1)
    assert float(copying.min()) > 0.999
    blended = (VMM(TINY)(x).next_vector * x).sum(-1)
    assert 0.85 < float(blended.min()) and float(blended.max()) < 0.9999


def test_the_generated_vector_names_concepts_outside_the_context():
    """With the share on the generator, the prediction leaves the span of the context."""
    model = VMM(TINY)
    model.next_head.share.bias = mx.array([30.0])
    x = unit((1, 3, 16), seed=4)
    predicted = np.array(model(x).next_vector[0])
    basis, _ = np.linalg.qr(np.array(x[0]).T)  # the context's span, orthonormal
    outside = predicted - (predicted @ basis) @ basis.T
    assert np.linalg.norm(outside, axis=-1).min() > 0.5


def test_relations_change_the_prediction_and_default_to_next():
    args = replace(TINY, relations=["next", "hypernym", "antonym"])
    model = VMM(args)
    model.next_head.share.bias = mx.array([0.0])
    x = unit((2, 4, 16), seed=5)
    plain = model(x).next_vector
    as_next = model(x, relations=mx.zeros((2, 4), dtype=mx.int32)).next_vector
    as_hypernym = model(x, relations=mx.ones((2, 4), dtype=mx.int32)).next_vector
    assert np.allclose(np.array(plain), np.array(as_next))
    assert not np.allclose(np.array(plain), np.array(as_hypernym), atol=1e-3)
    assert "relation_embedding" not in VMM(replace(TINY, relations=["next"]))  # next alone reads nothing


def memory_read(values: mx.array, similarity: list[float], valid: list[bool]) -> Memory:
    """One position's read (slots, d) as the memory of a (1, 1) batch."""
    return Memory(values[None, None], mx.array(similarity)[None, None], mx.array(valid)[None, None])


def test_the_memory_answers_when_the_route_picks_it_and_empty_slots_never_do():
    head = NextConceptHead(d_model=4, concept_dim=16, lags=2, correction=False, generator=True, memory_slots=3)
    head.route.bias = mx.array([-30.0, 30.0, -30.0])  # retrieve
    x, slots = unit((1, 1, 16), seed=1), unit((3, 16), seed=2)
    h = mx.zeros((1, 1, 4))
    # the sharpest similarity wins; a slot without an edge has none, whatever it says
    out = head(x, h, memory=memory_read(slots, [0.9, 0.2, 5.0], [True, True, False]))
    expected = mx.softmax(10 * mx.array([0.9, 0.2]))  # softplus(10) sharpness to start
    mixed = expected[0] * slots[0] + expected[1] * slots[1]
    assert float(mx.abs(out[0, 0] - mixed / mx.linalg.norm(mixed)).max()) < 1e-4
    # nothing read: the route leaves the memory out, copy and generate share what is left
    nothing = head(x, h, memory=memory_read(slots, [0.0] * 3, [False] * 3))
    alone = head(x, h)
    assert float(mx.abs(nothing - alone).max()) < 1e-6
    head.route.bias = mx.array([30.0, -30.0, -30.0])  # copy
    assert float(mx.abs(head(x, h, memory=memory_read(slots, [0.9, 0.2, 0.1], [True] * 3)) - x).max()) < 1e-5


def test_the_memory_query_reranks_the_slots():
    """q(h) . target adds to a slot's weight: a query along one target pulls the mixture onto it."""
    head = NextConceptHead(d_model=4, concept_dim=16, lags=2, correction=False, generator=False, memory_slots=2)
    head.route.bias = mx.array([-30.0, 30.0])
    slots = unit((2, 16), seed=5)
    head.memory_query.bias = 50 * slots[1]
    out = head(unit((1, 1, 16), seed=6), mx.zeros((1, 1, 4)), memory=memory_read(slots, [0.9, 0.1], [True, True]))
    assert float((out[0, 0] * slots[1]).sum()) > 0.999


def test_next_concept_head_mixes_the_recent_context_causally():
    head = NextConceptHead(d_model=4, concept_dim=16, lags=3, correction=False, generator=False)
    head.mix.bias = mx.array([0.0, 0.0, -1e9])  # half the current concept, half the one before
    x = unit((2, 6, 16), seed=3)
    out = head(x, mx.zeros((2, 6, 4)))
    expected = x[:, 1:] + x[:, :-1]
    expected = expected / mx.linalg.norm(expected, axis=-1, keepdims=True)
    assert float(mx.abs(out[:, 1:] - expected).max()) < 1e-5
    assert float(mx.abs(out[:, 0] - x[:, 0]).max()) < 1e-5  # nothing before the first concept
    assert "correction" not in head


def test_shapes_unit_outputs_and_parameter_count():
    mx.random.seed(0)
    model = VMM(TINY)
    out = model(unit((2, 9, 16)))
    assert out.next_vector.shape == (2, 9, 16) and out.hidden.shape == (2, 9, 32)
    assert np.allclose(np.linalg.norm(np.array(out.next_vector), axis=-1), 1, atol=1e-5)
    assert len(out.router) == 2 and int(out.router[0].load.sum()) == 2 * 9 * 2
    from mlx.utils import tree_flatten

    names = [k for k, _ in tree_flatten(model.trainable_parameters())]
    assert not any(k.startswith("rvq.") or k == "expert_centroids" for k in names)
    assert model.parameter_count() == sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    assert model.parameter_count(trainable_only=False) > model.parameter_count()


def test_the_state_bytes_priced_are_the_bytes_a_cache_carries():
    """S_geo prices `state_bytes`; a cache after a prompt holds exactly that many bytes of scan state and
    convolution window (the concept window is the context mixture's, priced per held concept)."""
    model = VMM(TINY)
    cache = model.make_cache()
    mx.eval(model(unit((3, 7, 16)), cache=cache).next_vector)
    carried = sum(layer.ssm.nbytes + layer.conv.state.nbytes for layer in cache.layers)
    assert carried == TINY.state_bytes(batch=3) > 0
    deeper = dataclasses.replace(TINY, n_layers=4)
    assert deeper.state_bytes() == 2 * TINY.state_bytes() and deeper.flops_per_token() > TINY.flops_per_token()


def test_model_is_causal():
    mx.random.seed(1)
    model = VMM(dataclasses.replace(TINY, next_correction=True))
    for layer in (model.next_head.correction, model.next_head.mix):  # not the initial "repeat the last" weights
        layer.weight = 0.1 * mx.random.normal(layer.weight.shape)
    x = unit((1, 10, 16), seed=1)
    changed = mx.concatenate([x[:, :6], unit((1, 4, 16), seed=2)], axis=1)
    assert float(mx.abs(model(x).next_vector[:, :6] - model(changed).next_vector[:, :6]).max()) < 1e-5
    assert float(mx.abs(model(x).next_vector[:, 6:] - model(changed).next_vector[:, 6:]).max()) > 1e-3


def test_planner_teacher_forcing_matches_its_distribution_and_feeds_the_ledger():
    mx.random.seed(2)
    model = VMM(TINY)
    h = model(unit((1, 3, 16))).hidden[0, -1]
    dist = model.planner.distribution(h)
    log_joint = dist.log_joint()
    assert log_joint.shape == (3, 3)
    assert float(mx.logsumexp(log_joint.reshape(-1))) == pytest.approx(0.0, abs=1e-5)
    codes = mx.array([[2, 1]], dtype=mx.int32)
    logits = model.planner(h[None], codes)[0]
    logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    assert float(logp[0, 2] + logp[1, 1]) == pytest.approx(float(log_joint[2, 1]), abs=1e-5)
    prefix = mx.array([[2]], dtype=mx.int32)
    assert np.allclose(np.array(dist.conditional_logprobs(prefix)[0]), np.array(logp[1]), atol=1e-5)
    assert float(s_mod_exact(log_joint, View.finest(2))) >= 0


def test_expert_centroids_steer_routing():
    mx.random.seed(3)
    model = VMM(ModelArgs(**{**TINY.__dict__, "router_beta": 100.0, "top_k": 1}))
    x = unit((1, 1, 16), seed=4)
    for owner in (3, 1):  # the expert whose centroid is the concept gets it, in every layer
        model.set_expert_centroids(mx.zeros((4, 16)).at[owner].add(x[0, 0]))
        assert [np.array(r.load).tolist() for r in model(x).router] == [np.eye(4, dtype=int)[owner].tolist()] * 2
    with pytest.raises(ValueError, match="expert centroids"):
        model.set_expert_centroids(mx.zeros((2, 16)))


def test_gradients_reach_every_trainable_parameter():
    mx.random.seed(5)
    model = VMM(TINY)
    x = unit((2, 6, 16), seed=6)
    y = unit((2, 6, 16), seed=7)
    codes = mx.zeros((2, 6, 2), dtype=mx.int32)

    def loss(m):
        out = m(x)
        logits = m.planner(out.hidden, codes)
        return (out.next_vector * y).sum() + logits.mean() + sum(s.balance_loss for s in out.router)

    _, grads = nn.value_and_grad(model, loss)(model)
    from mlx.utils import tree_flatten

    missing = [k for k, g in tree_flatten(grads) if not float(mx.abs(g).sum()) > 0]
    assert not missing, missing
