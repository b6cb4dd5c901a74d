"""What every exporter must refuse, checked the same way for each."""

import pytest

from meqg_mlx.errors import MeqgError
from meqg_mlx.runs import RunDir


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
