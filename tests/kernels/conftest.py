"""Kernel tests run each kernel on the device a test names, against its MLX-ops reference."""

from __future__ import annotations

import mlx.core as mx
import pytest

from meqg_mlx.kernels import extension, extension_problem

metal = [
    pytest.mark.macos,
    pytest.mark.skipif(not mx.metal.is_available(), reason="Metal kernels need an Apple GPU (macOS)"),
]
cuda = [pytest.mark.gpu]


def on_device(name: str, monkeypatch):
    monkeypatch.delenv("MEQG_KERNELS", raising=False)
    if name == "cpu" and extension() is None:
        pytest.fail(f"meqg's C++ extension should have been built by `make kernels`: {extension_problem()}")
    previous = mx.default_device()
    mx.set_default_device(mx.cpu if name == "cpu" else mx.gpu)
    yield name
    mx.set_default_device(previous)


@pytest.fixture(params=["cpu", pytest.param("metal", marks=metal), pytest.param("cuda", marks=cuda)])
def device(request, monkeypatch):
    """Each backend in turn as MLX's default device, with kernels on (MEQG_KERNELS unset)."""
    yield from on_device(request.param, monkeypatch)


@pytest.fixture
def cpu(monkeypatch):
    """The CPU as MLX's default device, with kernels on: for kernels that have no GPU backend."""
    yield from on_device("cpu", monkeypatch)
