"""`meqg runs`: the runs in a directory, one row each, from their run.json and telemetry."""

import json

from meqg_mlx.train.run import TrainingRun

from ..conftest import cli, meqg
from ..train.test_trainer import small_config


def test_runs_lists_each_run_with_its_status_and_last_validation(small_store_path, tmp_path):
    runs = tmp_path / "runs"
    TrainingRun(runs / "first", small_store_path, small_config(steps=2, eval_every=2)).train()
    stopped = TrainingRun(runs / "second", small_store_path, small_config(steps=4, eval_every=0))
    stopped.train(should_stop=lambda: stopped.trainer.state.step >= 1)
    (runs / "notes").mkdir()  # not a run: left out
    listed = meqg("runs", str(runs), "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["run"].rsplit("/", 1)[-1]: row for row in json.loads(listed.stdout)}
    assert set(rows) == {"first", "second"}
    first, second = rows["first"], rows["second"]
    assert first["run_id"] == json.loads((runs / "first" / "run.json").read_text())["run_id"]
    assert (first["status"], first["step"], second["status"], second["step"]) == ("finished", 2, "interrupted", 1)
    assert first["parameters"] > 1000 and first["store"] == str(small_store_path) and not first["inverter"]
    versus = first["validation"]["next"]
    assert versus["baseline"] in ("copy_last", "ridge", "knn_successor@8", "mlp", "transformer", "context_mean")
    assert abs(versus["model"] - versus["baseline_recall@1"] - versus["difference"]) < 1e-9
    assert second["validation"] == {}  # stopped before any evaluation
    table = meqg("runs", str(runs))
    assert table.returncode == 0 and first["run_id"] in table.stdout and "finished" in table.stdout
    assert f"next {versus['model']:.3f} vs {versus['baseline']}" in table.stdout
    assert cli("runs", str(runs / "notes")).stdout.startswith("no runs under")
    missing = cli("runs", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and missing.stderr == f"error: no runs directory {tmp_path / 'nowhere'}\n"
