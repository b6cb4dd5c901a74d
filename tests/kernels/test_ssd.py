"""The SSD scan: its MLX-ops references against an outside oracle (a numpy transcription of
Mamba-2's minimal SSD) and each other, and the kernel against them in value and in the
gradient of every input, on each backend (`device` in conftest.py)."""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from meqg_mlx.errors import InputError
from meqg_mlx.kernels.ssd import segment_sums, ssd_chunked, ssd_scan, ssd_sequential
from meqg_mlx.vmm.ssd import SSDArgs, SSDMixer

from .oracle import assert_hvp_matches_central_differences

# (batch, length, heads, head_dim, groups, d_state, chunk): odd sizes, a partial last chunk,
# grouped B/C, one decoding step, a chunk longer than the sequence, and enough work per call
# that the CPU extension splits rows over threads (3 blocks on 2 threads: uneven). Outputs
# are not zeroed on the CPU, so a row no thread ran shows up as a mismatch here (checked by
# making the last thread stop one block short).
SHAPES = [
    (2, 37, 4, 5, 2, 7, 8),
    (3, 16, 2, 3, 1, 4, 16),
    (1, 1, 2, 3, 1, 5, 4),
    (2, 5, 2, 3, 1, 6, 64),
    (3, 64, 4, 16, 1, 32, 16),
]


def inputs(b, length, h, p, g, n, seed=0):
    keys = iter(mx.random.split(mx.random.key(seed), 8))
    x = mx.random.normal((b, length, h, p), key=next(keys))
    dt = nn.softplus(mx.random.normal((b, length, h), key=next(keys)) - 1.0)
    A = -mx.exp(mx.random.normal((h,), key=next(keys)))
    B, C = (mx.random.normal((b, length, g, n), key=next(keys)) for _ in range(2))
    D = mx.random.normal((h,), key=next(keys))
    state = mx.random.normal((b, h, p, n), key=next(keys))
    return x, dt, A, B, C, D, state


def numpy_segsum(a: np.ndarray) -> np.ndarray:
    cumulative = np.cumsum(a, axis=-1)
    sums = cumulative[..., :, None] - cumulative[..., None, :]
    return np.where(np.tril(np.ones((a.shape[-1],) * 2, bool)), sums, -np.inf)


def minimal_ssd(x, dt, A, B, C, D, chunk, state):
    """Mamba-2's `ssd_minimal_discrete` (its paper's listing) in float64 numpy: four einsums.

    Written from the algorithm, not from our code: the oracle the references answer to."""
    x, dt, A, B, C, D, state = (np.asarray(v, np.float64) for v in (x, dt, A, B, C, D, state))
    b, length, h, p = x.shape
    B, C = (np.repeat(v, h // v.shape[2], axis=2) for v in (B, C))
    blocks = lambda v: v.reshape(b, length // chunk, chunk, *v.shape[2:])  # noqa: E731
    X, Bc, Cc = blocks(x * dt[..., None]), blocks(B), blocks(C)
    a = blocks(dt * A).transpose(0, 3, 1, 2)  # (b, h, c, l)
    a_cum = np.cumsum(a, axis=-1)
    y_diag = np.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", Cc, Bc, np.exp(numpy_segsum(a)), X)
    states = np.einsum("bclhn,bhcl,bclhp->bchpn", Bc, np.exp(a_cum[..., -1:] - a_cum), X)
    states = np.concatenate([state[:, None], states], axis=1)
    chunk_decay = np.exp(numpy_segsum(np.pad(a_cum[..., -1], [(0, 0), (0, 0), (1, 0)])))
    states = np.einsum("bhzc,bchpn->bzhpn", chunk_decay, states)
    y_off = np.einsum("bclhn,bchpn,bhcl->bclhp", Cc, states[:, :-1], np.exp(a_cum))
    return (y_diag + y_off).reshape(b, length, h, p) + D[:, None] * x, states[:, -1]


def test_segment_sums():
    out = np.array(segment_sums(mx.array([1.0, 2.0, 3.0])))
    assert out[2, 0] == 5.0 and out[1, 1] == 0.0 and out[2, 1] == 3.0 and np.isneginf(out[0, 1])


@pytest.mark.parametrize("shape", [(2, 32, 4, 5, 2, 7, 8), (1, 48, 2, 3, 1, 4, 16)], ids=str)
def test_the_references_equal_mamba2s_minimal_ssd(shape):
    *dims, chunk = shape
    x, dt, A, B, C, D, state = inputs(*dims, seed=3)
    y_want, final_want = minimal_ssd(x, dt, A, B, C, D, chunk, state)
    scale = max(1.0, np.abs(y_want).max())
    for scan, name in ((lambda *a: ssd_chunked(*a[:6], chunk, a[6]), "chunked"), (ssd_sequential, "sequential")):
        y, final = scan(x, dt, A, B, C, D, state)
        assert np.abs(np.array(y) - y_want).max() <= 2e-5 * scale, name
        assert np.abs(np.array(final) - final_want).max() <= 2e-5 * max(1.0, np.abs(final_want).max()), name


@pytest.mark.parametrize("length, chunk", [(37, 8), (64, 16), (5, 64), (1, 4)])
def test_chunked_scan_equals_sequential_reference(length, chunk):
    x, dt, A, B, C, D, _ = inputs(2, length, 4, 8, 2, 16)
    y_ref, s_ref = ssd_sequential(x, dt, A, B, C, D)
    y, s = ssd_chunked(x, dt, A, B, C, D, chunk_size=chunk)
    scale = float(mx.abs(y_ref).max())
    assert float(mx.abs(y - y_ref).max()) <= 1e-5 * max(scale, 1.0)
    assert float(mx.abs(s - s_ref).max()) <= 1e-5 * max(float(mx.abs(s_ref).max()), 1.0)


def test_carried_state_continues_the_sequence():
    x, dt, A, B, C, D, _ = inputs(2, 40, 4, 8, 2, 16)
    y_all, s_all = ssd_chunked(x, dt, A, B, C, D, chunk_size=8)
    y1, s1 = ssd_chunked(x[:, :23], dt[:, :23], A, B[:, :23], C[:, :23], D, chunk_size=8)
    y2, s2 = ssd_chunked(x[:, 23:], dt[:, 23:], A, B[:, 23:], C[:, 23:], D, chunk_size=8, state=s1)
    assert float(mx.abs(mx.concatenate([y1, y2], axis=1) - y_all).max()) < 1e-4
    assert float(mx.abs(s2 - s_all).max()) < 1e-4


def loss_of(scan, chunk):
    """A loss that weighs every output element differently, so a wrong gradient anywhere shows."""

    def loss(x, dt, A, B, C, D, state):
        y, final = scan(x, dt, A, B, C, D, chunk, state)
        return (y * mx.cos(y)).sum() + (final * mx.sin(final)).sum()

    return loss


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_values_and_gradients_match_the_reference(device, shape):
    *dims, chunk = shape
    args = inputs(*dims)
    y, final = ssd_scan(*args[:6], chunk, args[6])
    y_ref, final_ref = ssd_chunked(*args[:6], chunk, args[6])
    assert np.allclose(y, y_ref, atol=2e-5 * max(1.0, float(mx.abs(y_ref).max())))
    assert np.allclose(final, final_ref, atol=2e-5 * max(1.0, float(mx.abs(final_ref).max())))

    argnums = tuple(range(7))
    grads = mx.grad(loss_of(ssd_scan, chunk), argnums)(*args)
    expected = mx.grad(loss_of(ssd_chunked, chunk), argnums)(*args)
    for name, got, want in zip(["x", "dt", "A", "B", "C", "D", "state"], grads, expected):
        scale = max(1.0, float(mx.abs(want).max()))
        assert got.shape == want.shape, name
        assert np.allclose(got, want, atol=5e-5 * scale), f"d{name}: max error {float(mx.abs(got - want).max())}"


def test_without_a_state_it_starts_from_zero_as_the_recurrence_does(device):
    x, dt, A, B, C, D, _ = inputs(2, 9, 2, 3, 1, 4, seed=1)
    y, final = ssd_scan(x, dt, A, B, C, D, 4)
    y_ref, final_ref = ssd_sequential(x, dt, A, B, C, D)
    assert np.allclose(y, y_ref, atol=1e-5) and np.allclose(final, final_ref, atol=1e-5)


def test_split_sequences_continue_through_the_state(device):
    """A decoding loop: the state after a prefix carries the scan on, one step at a time."""
    x, dt, A, B, C, D, _ = inputs(1, 12, 2, 4, 1, 8, seed=2)
    y_all, final_all = ssd_scan(x, dt, A, B, C, D, 4)
    y_prefix, state = ssd_scan(x[:, :7], dt[:, :7], A, B[:, :7], C[:, :7], D, 4)
    steps = [y_prefix]
    for t in range(7, 12):
        y_t, state = ssd_scan(x[:, t : t + 1], dt[:, t : t + 1], A, B[:, t : t + 1], C[:, t : t + 1], D, 4, state)
        steps.append(y_t)
    assert np.allclose(mx.concatenate(steps, axis=1), y_all, atol=1e-5)
    assert np.allclose(state, final_all, atol=1e-5)


def test_non_finite_inputs_poison_what_the_recurrence_poisons(device):
    """From the bad step on, and no earlier: the chunked reference smears an Inf over its
    whole chunk (inf * 0 in the matrix products), the recurrence and the kernel do not."""
    x, dt, A, B, C, D, state = inputs(2, 10, 2, 3, 1, 4, seed=4)
    x = x.at[1, 6, 0, 2].add(math.nan)
    B = B.at[0, 3, 0, 1].add(math.inf)
    y, final = ssd_scan(x, dt, A, B, C, D, 4, state)
    y_ref, final_ref = ssd_sequential(x, dt, A, B, C, D, state)
    assert np.array_equal(np.isfinite(y), np.isfinite(y_ref))
    assert np.array_equal(np.isfinite(final), np.isfinite(final_ref))
    assert not np.isfinite(y).all()


def test_the_mixer_runs_the_kernel_and_agrees_with_the_recurrence(device, monkeypatch):
    mx.random.seed(5)
    mixer = SSDMixer(SSDArgs(d_model=24, d_state=8, head_dim=6, chunk_size=8))
    u = mx.random.normal((2, 19, 24))
    with_kernel = mixer(u)
    monkeypatch.setenv("MEQG_KERNELS", "0")
    assert np.allclose(with_kernel, mixer(u), atol=1e-5)
    assert np.allclose(with_kernel, mixer(u, reference=True), atol=1e-5)


def test_hessian_vector_products_match_central_differences_of_the_kernels_gradient(device):
    """train/curvature.py differentiates the gradient (reverse over reverse)."""
    args = inputs(2, 11, 2, 3, 1, 4, seed=6)
    vector = inputs(2, 11, 2, 3, 1, 4, seed=7)
    assert_hvp_matches_central_differences(loss_of(ssd_scan, 4), args, tuple(range(7)), vector)


def test_mismatched_shapes_are_refused_before_any_kernel_reads(device):
    x, dt, A, B, C, D, state = inputs(2, 9, 4, 3, 2, 5)
    cases = [
        ((x, dt[:, :5], A, B, C, D, 4, state), "dt must be"),
        ((x, dt, A[:3], B, C, D, 4, state), "A must be"),
        ((x, dt, A, B, C[..., :4], D, 4, state), "C must be"),
        ((x, dt, A, B, C, D, 4, state[:1]), "state must be"),
        ((x, dt, A, B[:, :5], C, D, 4, state), "B must be"),
        ((x, dt, A, B, C, D, 0, state), "chunk_size"),
        ((x[..., 0], dt, A, B, C, D, 4, state), "4-d"),
    ]
    for args, message in cases:
        with pytest.raises(InputError, match=message):
            ssd_scan(*args)


def test_gradients_are_bit_for_bit_repeatable(device):
    """Threads (CPU) and atomics (GPUs) must not make a step's gradient depend on timing:
    on the CPU no two threads add into one element, so reruns agree exactly."""
    *dims, chunk = SHAPES[-1]
    args = inputs(*dims, seed=4)
    grad = mx.grad(loss_of(ssd_scan, chunk), argnums=tuple(range(7)))
    first, second = grad(*args), grad(*args)
    if device == "cpu":
        assert all(np.array_equal(a, b) for a, b in zip(first, second))
    else:
        assert all(np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(first, second))
