import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from meqg_mlx.vmm.ssd import SSDArgs, SSDMixer


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
