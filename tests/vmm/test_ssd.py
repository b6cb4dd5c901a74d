import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from meqg_mlx.vmm.ssd import SSDArgs, SSDMixer, segment_sums, ssd_chunked, ssd_sequential


def random_inputs(b=2, length=37, h=4, p=8, g=2, n=16, seed=0):
    mx.random.seed(seed)
    x = mx.random.normal((b, length, h, p))
    dt = nn.softplus(mx.random.normal((b, length, h)) - 1.0)
    A = -mx.exp(mx.random.uniform(-1, 1.5, (h,)))
    B = mx.random.normal((b, length, g, n))
    C = mx.random.normal((b, length, g, n))
    D = mx.random.normal((h,))
    return x, dt, A, B, C, D


def test_segment_sums():
    out = np.array(segment_sums(mx.array([1.0, 2.0, 3.0])))
    assert out[2, 0] == 5.0 and out[1, 1] == 0.0 and out[2, 1] == 3.0 and np.isneginf(out[0, 1])


@pytest.mark.parametrize("length, chunk", [(37, 8), (64, 16), (5, 64), (1, 4)])
def test_chunked_scan_equals_sequential_reference(length, chunk):
    x, dt, A, B, C, D = random_inputs(length=length)
    y_ref, s_ref = ssd_sequential(x, dt, A, B, C, D)
    y, s = ssd_chunked(x, dt, A, B, C, D, chunk_size=chunk)
    scale = float(mx.abs(y_ref).max())
    assert float(mx.abs(y - y_ref).max()) <= 1e-5 * max(scale, 1.0)
    assert float(mx.abs(s - s_ref).max()) <= 1e-5 * max(float(mx.abs(s_ref).max()), 1.0)


def test_carried_state_continues_the_sequence():
    x, dt, A, B, C, D = random_inputs(length=40)
    y_all, s_all = ssd_chunked(x, dt, A, B, C, D, chunk_size=8)
    y1, s1 = ssd_chunked(x[:, :23], dt[:, :23], A, B[:, :23], C[:, :23], D, chunk_size=8)
    y2, s2 = ssd_chunked(x[:, 23:], dt[:, 23:], A, B[:, 23:], C[:, 23:], D, chunk_size=8, state=s1)
    assert float(mx.abs(mx.concatenate([y1, y2], axis=1) - y_all).max()) < 1e-4
    assert float(mx.abs(s2 - s_all).max()) < 1e-4


def test_mixer_matches_reference_is_causal_and_differentiable():
    mx.random.seed(1)
    mixer = SSDMixer(SSDArgs(d_model=32, d_state=16, expand=2, head_dim=16, n_groups=2, chunk_size=8))
    u = mx.random.normal((2, 21, 32))
    fast, slow = mixer(u), mixer(u, reference=True)
    assert float(mx.abs(fast - slow).max()) <= 1e-5 * max(float(mx.abs(slow).max()), 1.0)
    changed = mx.concatenate([u[:, :15], mx.random.normal((2, 6, 32))], axis=1)
    assert float(mx.abs(mixer(changed)[:, :15] - fast[:, :15]).max()) < 1e-6

    def loss(model):
        return (model(u) ** 2).mean()

    value, grads = nn.value_and_grad(mixer, loss)(mixer)
    flat = dict(nn.utils.tree_flatten(grads))
    assert np.isfinite(float(value))
    assert all(np.isfinite(np.array(g)).all() for g in flat.values())
    assert float(mx.abs(flat["A_log"]).sum()) > 0 and float(mx.abs(flat["in_proj.weight"]).sum()) > 0


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="head_dim"):
        SSDMixer(SSDArgs(d_model=30, head_dim=16))
