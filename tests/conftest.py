"""Shared fixtures: the real bundled encoder and a small real store built once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import meqg_mlx  # noqa: E402,F401  (configures BLAS before anything imports mlx)

SMALL_SOURCES = ["stdlib:json,heapq,bisect,textwrap,string,functools,fractions,statistics,shlex,difflib"]


@pytest.fixture(scope="session")
def embedder():
    from meqg_mlx.encoder import default_embedder

    return default_embedder()


@pytest.fixture(scope="session")
def small_store_path(tmp_path_factory, embedder) -> Path:
    """A few hundred real stdlib concepts, built through the real pipeline."""
    from meqg_mlx.concepts import build_store

    path = tmp_path_factory.mktemp("stores") / "small"
    build_store(path, SMALL_SOURCES, embedder)
    return path


@pytest.fixture(scope="session")
def small_store(small_store_path):
    from meqg_mlx.concepts import ConceptStore

    return ConceptStore.open(small_store_path)


def meqg(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed `meqg` console script as a user would."""
    exe = Path(sys.executable).with_name("meqg")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
