"""The VMM's decoding state, so that feeding one more concept costs one concept, not the whole context.

mlx-lm's form: `cache = model.make_cache()`, then `model(x, cache=cache)` any number of
times, each call continuing where the last one ended. Per layer the cache holds the SSD
scan state and the convolution's last inputs; for the next-concept head, the last
concepts fed (its context mixture looks back `context_lags` concepts). All of it is
fixed-size: the state does not grow with the context.

PyTorch twin: converters/torch_vmm.py (tests/converters/test_twins.py keeps the two in step).
"""

from __future__ import annotations

import mlx.core as mx


class WindowCache:
    """The last `size` rows fed along the sequence axis (zeros before the first), for causal windows.

    A fresh cache is the zero left-padding of a whole-sequence forward, so both paths share this code.
    """

    def __init__(self, size: int):
        self.size = size
        self.state: mx.array | None = None  # (B, size, D)

    def update_and_fetch(self, x: mx.array) -> mx.array:
        """x (B, T, D) -> (B, size + T, D): the remembered rows, then x; remembers the last `size`."""
        history = self.state if self.state is not None else mx.zeros((x.shape[0], self.size, x.shape[-1]), x.dtype)
        window = mx.concatenate([history, x], axis=1)
        self.state = window[:, window.shape[1] - self.size :]
        return window

    def copy(self) -> "WindowCache":
        new = WindowCache(self.size)
        new.state = self.state
        return new


class MixerCache:
    """One SSD mixer's state: the convolution's last `conv_kernel - 1` inputs and the scan state S."""

    def __init__(self, conv_kernel: int):
        self.conv = WindowCache(conv_kernel - 1)
        self.ssm: mx.array | None = None  # (B, heads, head_dim, d_state)

    def copy(self) -> "MixerCache":
        new = MixerCache(self.conv.size + 1)
        new.conv, new.ssm = self.conv.copy(), self.ssm
        return new


class VMMCache:
    """Everything `VMM.__call__` needs to continue a sequence; `copy()` forks it (arrays are immutable)."""

    def __init__(self, n_layers: int, conv_kernel: int, context_lags: int):
        self.layers = [MixerCache(conv_kernel) for _ in range(n_layers)]
        self.concepts = WindowCache(context_lags - 1)
        self.offset = 0  # concepts fed so far

    def copy(self) -> "VMMCache":
        new = VMMCache(0, 1, 1)
        new.layers = [layer.copy() for layer in self.layers]
        new.concepts, new.offset = self.concepts.copy(), self.offset
        return new
