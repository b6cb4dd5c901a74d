"""`encoder.backend: auto`: the faster backend here, the same vectors as the other."""

import platform

import numpy as np
import pytest

from meqg_mlx.encoder import choose_backend, load_embedder
from meqg_mlx.errors import InputError


def test_auto_picks_a_backend_and_says_why(monkeypatch):
    backend, why = choose_backend()
    assert backend in ("mlx", "torch") and why
    if platform.machine() == "x86_64" and platform.system() == "Linux":  # no GPU here
        assert backend == "mlx" and "kernels" in why  # with meqg's kernels MLX measured faster
        monkeypatch.setenv("MEQG_KERNELS", "0")
        backend, why = choose_backend()
        assert backend == "torch" and "MEQG_KERNELS=0" in why
        monkeypatch.delenv("MEQG_KERNELS")
    assert choose_backend(dtype="float16")[0] == "mlx" and choose_backend(output="mean")[0] == "mlx"


def test_auto_gives_the_same_vectors_as_the_mlx_port(embedder):
    texts = ["Sort a list in place.", "Open a socket to a remote host and read from it."]
    auto = load_embedder("auto")
    assert auto.name == embedder.name and auto.dim == embedder.dim
    assert np.einsum("ij,ij->i", auto.encode(texts), embedder.encode(texts)).min() > 0.99999


def test_unknown_backend_is_refused():
    with pytest.raises(InputError, match="unknown encoder backend 'jax'"):
        load_embedder("jax")
