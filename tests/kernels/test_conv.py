"""The mixer's causal conv kernel against its MLX-ops reference (grouped conv1d, bias, silu),
in value and in the gradient of window, weight and bias, on each backend."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from meqg_mlx.errors import InputError
from meqg_mlx.kernels import kernel_status
from meqg_mlx.kernels.conv import causal_conv_silu, reference
from meqg_mlx.vmm.cache import MixerCache
from meqg_mlx.vmm.ssd import SSDArgs, SSDMixer

from .oracle import close, weighted_sum

# (batch, steps, channels, taps): odd channel counts (no vector-width multiple), one decoding
# step, a one-tap conv, and enough work that the CPU extension splits steps, window rows and
# channels over threads. Outputs are not zeroed first, so a row no thread wrote would show.
SHAPES = [(2, 5, 7, 4), (3, 17, 33, 3), (1, 1, 9, 4), (2, 6, 5, 1), (16, 32, 321, 4)]


def inputs(b, steps, channels, taps, seed=0):
    keys = iter(mx.random.split(mx.random.key(seed), 3))
    window = mx.random.normal((b, steps + taps - 1, channels), key=next(keys)) * 2
    weight = mx.random.normal((channels, taps, 1), key=next(keys))
    bias = mx.random.normal((channels,), key=next(keys))
    return window, weight, bias


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_values_and_gradients_match_the_reference(device, shape):
    assert kernel_status("causal_conv").backend == device
    args = inputs(*shape)
    assert close(causal_conv_silu(*args), reference(*args))
    got = mx.grad(weighted_sum(causal_conv_silu), (0, 1, 2))(*args)
    want = mx.grad(weighted_sum(reference), (0, 1, 2))(*args)
    for name, g, w in zip(("window", "weight", "bias"), got, want):
        assert g.shape == w.shape, name
        assert close(g, w, 5e-5), name


def test_non_finite_inputs_reach_the_outputs_they_feed(device):
    window, weight, bias = inputs(2, 6, 5, 4)
    window[0, 3, 1] = float("nan")
    got, want = np.array(causal_conv_silu(window, weight, bias)), np.array(reference(window, weight, bias))
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.isnan(got).sum() == 4  # steps 0..3 read row 3
    assert np.allclose(got[~np.isnan(got)], want[~np.isnan(want)], atol=1e-5)


def test_the_mixer_decodes_step_by_step_as_it_runs_the_whole_sequence(device):
    mixer = SSDMixer(SSDArgs(d_model=16, d_state=8, head_dim=8, chunk_size=4))
    u = mx.random.normal((2, 7, 16), key=mx.random.key(3))
    whole = mixer(u)
    cache = MixerCache(mixer.args.conv_kernel)
    steps = mx.concatenate([mixer(u[:, t : t + 1], cache) for t in range(u.shape[1])], axis=1)
    assert close(steps, whole, 1e-4)


def test_wrong_shapes_are_refused_with_the_shapes_named(device):
    window, weight, bias = inputs(2, 5, 7, 4)
    with pytest.raises(InputError, match=r"weight must be \(7, K, 1\)"):
        causal_conv_silu(window, weight[:3], bias)
    with pytest.raises(InputError, match="bias"):
        causal_conv_silu(window, weight, bias[:6])
    with pytest.raises(InputError, match="K <= 2"):
        causal_conv_silu(window[:, :2], weight, bias)
    with pytest.raises(InputError, match="must be 3-, 3- and 1-d, got 2"):
        causal_conv_silu(window[0], weight, bias)


def test_with_kernels_off_the_reference_runs(monkeypatch):
    monkeypatch.setenv("MEQG_KERNELS", "0")
    assert kernel_status("causal_conv").backend is None
    args = inputs(2, 5, 7, 4)
    assert np.array_equal(causal_conv_silu(*args), reference(*args))
