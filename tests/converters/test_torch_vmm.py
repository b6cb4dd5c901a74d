"""The PyTorch twin computes what the MLX VMM computes, forward and backward, from the same weights."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mlx.utils import tree_flatten

from meqg_converters.weights import load_checkpoint_vmm, load_vmm, mlx_to_torch, save_mlx_weights
from meqg_mlx.errors import MeqgError
from meqg_mlx.train.checkpoint import save_checkpoint
from meqg_mlx.train.trainer import Trainer
from meqg_mlx.vmm.model import VMM, Memory, ModelArgs
from meqg_converters.torch_vmm import Memory as TwinMemory

from ..train.test_trainer import small_config

ARGS = ModelArgs(
    concept_dim=48,
    d_model=32,
    n_layers=2,
    d_state=16,
    head_dim=16,
    chunk_size=8,
    n_experts=4,
    top_k=2,
    d_ff=64,
    rvq_levels=2,
    rvq_codes=16,
    next_correction=True,
    memory_slots=3,
)


def unit(rng, *shape):
    x = rng.normal(size=shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def memories(rng, batch: int, steps: int) -> tuple[Memory, TwinMemory]:
    """A memory read for every position, some slots empty, for the MLX model and its twin."""
    values = unit(rng, batch, steps, ARGS.memory_slots, ARGS.concept_dim)
    similarity = rng.uniform(-0.2, 1.0, (batch, steps, ARGS.memory_slots)).astype(np.float32)
    valid = rng.random((batch, steps, ARGS.memory_slots)) < 0.7
    values, similarity = values * valid[..., None], similarity * valid
    arrays = (values, similarity, valid)
    return Memory(*map(mx.array, arrays)), TwinMemory(*map(torch.from_numpy, arrays))


def sliced(memory: TwinMemory, start: int, stop: int) -> TwinMemory:
    return TwinMemory(*(part[:, start:stop] for part in memory))


@pytest.fixture
def pair(tmp_path):
    """An MLX VMM with no zero-initialised head left, its PyTorch twin loaded from its safetensors, concepts
    and what they read from a memory."""
    rng = np.random.default_rng(0)
    mx.random.seed(0)
    model = VMM(ARGS)
    head = model.next_head
    head.mix.weight = mx.array(rng.normal(scale=0.5, size=head.mix.weight.shape).astype(np.float32))
    head.correction.weight = mx.array(rng.normal(scale=0.05, size=head.correction.weight.shape).astype(np.float32))
    head.memory_query.weight = mx.array(rng.normal(scale=0.5, size=head.memory_query.weight.shape).astype(np.float32))
    model.set_expert_centroids(mx.array(unit(rng, ARGS.n_experts, ARGS.concept_dim)))
    concepts = unit(rng, 3, 21, ARGS.concept_dim)  # 21 steps: a partial last chunk of 8
    model.rvq.initialize(mx.array(concepts.reshape(-1, ARGS.concept_dim)))
    model.save_weights(str(tmp_path / "model.safetensors"))
    return model, load_vmm(tmp_path / "model.safetensors", ARGS), concepts, memories(rng, 3, 21)


def mlx_loss(model, concepts, target, memory):
    out = model(concepts, memory=memory)
    codes, _ = model.rvq.encode(target.reshape(-1, ARGS.concept_dim))
    logits = model.planner(out.hidden.reshape(-1, ARGS.d_model), codes)
    return (
        (1 - (out.next_vector * target).sum(-1)).mean()
        + nn.losses.cross_entropy(logits, codes).mean()
        + sum(s.balance_loss for s in out.router)
    )


def torch_loss(model, concepts, target, memory):
    out = model(concepts, memory=memory)
    codes = model.rvq.encode(target.reshape(-1, ARGS.concept_dim))
    logits = model.planner(out.hidden.reshape(-1, ARGS.d_model), codes)
    return (
        (1 - (out.next_vector * target).sum(-1)).mean()
        + F.cross_entropy(logits.flatten(0, 1), codes.flatten())
        + sum(s.balance_loss for s in out.router)
    )


@torch.no_grad()
def test_forward_matches(pair):
    model, twin, concepts, (memory, twin_memory) = pair
    out, twin_out = model(mx.array(concepts), memory=memory), twin(torch.from_numpy(concepts), memory=twin_memory)
    np.testing.assert_allclose(twin_out.next_vector.detach().numpy(), np.array(out.next_vector), atol=1e-5)
    np.testing.assert_allclose(twin_out.hidden.detach().numpy(), np.array(out.hidden), atol=1e-4)
    for stats, twin_stats in zip(out.router, twin_out.router, strict=True):
        np.testing.assert_array_equal(twin_stats.load.numpy(), np.array(stats.load))
        assert float(twin_stats.balance_loss) == pytest.approx(float(stats.balance_loss), rel=1e-5)
        assert float(twin_stats.entropy) == pytest.approx(float(stats.entropy), rel=1e-5)
    flat = concepts.reshape(-1, ARGS.concept_dim)
    codes, _ = model.rvq.encode(mx.array(flat))
    np.testing.assert_array_equal(twin.rvq.encode(torch.from_numpy(flat)).numpy(), np.array(codes))


@torch.no_grad()
@pytest.mark.parametrize("pieces", [[1] * 21, [5, 1, 1, 9, 5]])  # chunk_size 8: steps and pieces across chunks
def test_cached_decoding_matches_the_whole_forward_and_mlx(pair, pieces):
    model, twin, concepts, (memory, twin_memory) = pair
    whole = model(mx.array(concepts), memory=memory)
    cache, start, outs = twin.make_cache(), 0, []
    for size in pieces:
        piece = torch.from_numpy(concepts[:, start : start + size])
        outs.append(twin(piece, cache=cache, memory=sliced(twin_memory, start, start + size)))
        start += size
    whole_twin = twin(torch.from_numpy(concepts), memory=twin_memory)
    for name in ("next_vector", "hidden"):
        stepped = torch.cat([getattr(o, name) for o in outs], 1).numpy()
        np.testing.assert_allclose(stepped, getattr(whole_twin, name).numpy(), atol=1e-5)
        mlx_atol = 1e-5 if name == "next_vector" else 1e-4  # as test_forward_matches
        np.testing.assert_allclose(stepped, np.array(getattr(whole, name)), atol=mlx_atol)


def test_gradients_match(pair):
    model, twin, concepts, (memory, twin_memory) = pair
    target = unit(np.random.default_rng(1), *concepts.shape)
    loss, grads = nn.value_and_grad(model, mlx_loss)(model, mx.array(concepts), mx.array(target), memory)
    twin_loss = torch_loss(twin, torch.from_numpy(concepts), torch.from_numpy(target), twin_memory)
    twin_loss.backward()
    assert twin_loss.item() == pytest.approx(float(loss), rel=1e-5)
    expected = mlx_to_torch({k: torch.from_numpy(np.array(v)) for k, v in tree_flatten(grads)})
    twin_grads = {k: p.grad for k, p in twin.named_parameters()}
    assert set(twin_grads) == set(expected)
    for name, grad in expected.items():
        scale = float(grad.abs().max()) + 1e-6
        assert float((twin_grads[name] - grad).abs().max()) <= 1e-4 * scale + 1e-7, name


def test_weights_round_trip_back_to_mlx(pair, tmp_path):
    model, twin, concepts, _ = pair
    save_mlx_weights(twin, tmp_path / "back.safetensors")
    back = VMM(ARGS)
    back.load_weights(str(tmp_path / "back.safetensors"), strict=True)
    for (name, a), (_, b) in zip(tree_flatten(model.parameters()), tree_flatten(back.parameters()), strict=True):
        assert np.array_equal(np.array(a), np.array(b)), name


def test_trained_checkpoint_loads_and_predicts_the_same(small_store, tmp_path):
    trainer = Trainer(small_store, small_config(steps=2))
    trainer.step()
    path = save_checkpoint(tmp_path / "run", trainer)
    twin = load_checkpoint_vmm(path)
    window = np.array(trainer.table.matrix[mx.array(np.arange(20))])[None]
    np.testing.assert_allclose(
        twin(torch.from_numpy(window)).next_vector.detach().numpy(),
        np.array(trainer.model(mx.array(window)).next_vector),
        atol=1e-5,
    )


def test_mismatched_weights_are_a_one_line_error(pair, tmp_path):
    model, _, _, _ = pair
    with pytest.raises(MeqgError, match="cannot load .* into the PyTorch VMM"):
        load_vmm(tmp_path / "model.safetensors", ModelArgs(**{**ARGS.__dict__, "n_layers": 3}))
    with pytest.raises(MeqgError, match="no model.safetensors"):
        load_checkpoint_vmm(tmp_path / "missing")
