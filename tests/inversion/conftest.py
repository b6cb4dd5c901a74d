"""A tiny inverter trained on a tiny real store, shared by the inversion tests."""

from __future__ import annotations

import pytest

from meqg_mlx.concepts.store import ConceptStore
from meqg_mlx.config import InversionConfig, MeqgConfig
from meqg_mlx.inversion.checkpoint import TrainedInverter
from meqg_mlx.inversion.inverter import ModelArgs
from meqg_mlx.inversion.training import InverterTraining


def tiny_config(**inversion) -> MeqgConfig:
    config = MeqgConfig()
    config.inverter = ModelArgs(hidden=64, layers=2, heads=2, prefix_tokens=2, max_tokens=24)
    config.inversion = InversionConfig(
        **{"steps": 300, "batch_size": 16, "learning_rate": 3e-3, "warmup_steps": 10, "eval_every": 100, **inversion}
    )
    return config


@pytest.fixture(scope="session")
def memorized(sentence_store_path, embedder, tmp_path_factory):
    """A tiny inverter trained until it has learned the store's eleven training sentences (id 0 is held out)."""
    run = tmp_path_factory.mktemp("inverter-run")
    training = InverterTraining(ConceptStore.open(sentence_store_path), run, embedder, tiny_config())
    summary = training.train()
    return run, summary, TrainedInverter.load(summary.directory)
