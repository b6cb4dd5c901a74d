"""A run trained briefly on the small real store, for the exports."""

import pytest

from meqg_mlx.errors import MeqgError
from meqg_mlx.runs import RunDir
from meqg_mlx.train.run import TrainingRun

from ..train.test_trainer import small_config


@pytest.fixture(scope="session")
def trained_run(small_store_path, tmp_path_factory):
    run = tmp_path_factory.mktemp("export") / "run"
    TrainingRun(run, small_store_path, small_config(steps=12, learning_rate=3e-3, warmup_steps=2)).train()
    return run


def refuses_taken_outputs_and_untrained_runs(export, trained_run, store_path, tmp_path) -> None:
    """`export(run, out)` refuses a non-empty `out` (and leaves it be) and a run with no checkpoint."""
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(MeqgError, match="already exists and is not an empty directory"):
        export(trained_run, taken)
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    fresh = tmp_path / "fresh-run"
    RunDir(fresh).create(store_path, "{}\n")
    with pytest.raises(MeqgError, match="no checkpoint in"):
        export(fresh, tmp_path / "out1")
