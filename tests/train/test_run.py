"""TrainingRun on a real store: telemetry per DESIGN.md, checkpoints, exact resume, recovery events."""

import json

import pytest

from meqg_mlx.errors import MeqgError
from meqg_mlx.train.run import TrainingRun
from meqg_mlx.telemetry import read_telemetry

from .test_trainer import small_config

STEP_FIELDS = {
    "schema",
    "ts",
    "run_id",
    "step",
    "event",
    "objective",
    "gate",
    "phi",
    "kappa",
    "regime",
    "experts",
    "lr",
    "throughput",
}


def run_config(steps, **train):
    return small_config(steps=steps, eval_every=4, checkpoint_every=4, phi_every=2, kappa_every=4, **train)


def test_a_run_writes_telemetry_checkpoints_and_evaluations(small_store_path, tmp_path):
    summary = TrainingRun(tmp_path / "run", small_store_path, run_config(8)).train()
    assert summary.step == 8 and not summary.interrupted
    assert set(summary.metrics) == {"model", "repeat_last", "nearest_neighbour"}
    records, malformed = read_telemetry(tmp_path / "run" / "telemetry.jsonl")
    assert malformed == 0
    steps = [r for r in records if r["event"] == "step"]
    assert [r["step"] for r in steps] == list(range(1, 9))
    assert all(STEP_FIELDS <= set(r) for r in steps)
    assert set(steps[0]["objective"]) == {"Delta", "S_geo", "S_ent", "S_mod"}
    assert {
        "accepted",
        "armijo",
        "trust",
        "kl_smooth",
        "retries",
        "view_size",
        "collapse_pressure",
        "trust_radius",
        "step_norm",
    } <= set(steps[0]["gate"])
    assert len(steps[0]["experts"]["load"]) == 4
    assert steps[1]["phi"] is not None and 0 <= steps[1]["phi"] <= 1 and steps[3]["kappa"] is not None
    assert [r["step"] for r in records if r["event"] == "eval"] == [4, 8]
    assert [r["step"] for r in records if r["event"] == "checkpoint" and r["action"] == "saved"] == [4, 8]
    assert any(r["event"] == "regime" for r in records)
    assert records[-1]["event"] == "run" and records[-1]["status"] == "finished" and records[-1]["target"] == 8
    with pytest.raises(MeqgError, match="already holds a run"):
        TrainingRun(tmp_path / "run", small_store_path, run_config(8))


def test_a_resumed_run_continues_exactly(small_store_path, tmp_path):
    TrainingRun(tmp_path / "straight", small_store_path, run_config(8)).train()
    stopped = TrainingRun(tmp_path / "split", small_store_path, run_config(8))
    summary = stopped.train(should_stop=lambda: stopped.trainer.state.step == 4)
    assert summary.interrupted and summary.step == 4
    TrainingRun(tmp_path / "split", resume=True).train()

    def deltas(name):
        records, _ = read_telemetry(tmp_path / name / "telemetry.jsonl")
        return {r["step"]: r["objective"]["Delta"] for r in records if r["event"] == "step"}

    assert deltas("split") == deltas("straight")
    records, _ = read_telemetry(tmp_path / "split" / "telemetry.jsonl")
    assert [(r["step"], r["status"]) for r in records if r["event"] == "run"] == [(4, "interrupted"), (8, "finished")]
    with pytest.raises(MeqgError, match="no run to resume"):
        TrainingRun(tmp_path / "nothing", resume=True)


def test_breakdown_triggers_cooldown_revert_and_perturbation(small_store_path, tmp_path):
    config = run_config(14)
    config.regime.revert_after, config.regime.perturb_after = 2, 3
    run = TrainingRun(tmp_path / "run", small_store_path, config)

    def force_breakdown(record):  # stable checkpoint at step 4, then every Phi reads as breakdown
        if record["step"] == 5:
            run.config.regime.phi_breakdown = -1.0

    run.train(on_step=force_breakdown)
    records, _ = read_telemetry(tmp_path / "run" / "telemetry.jsonl")
    actions = [r["action"] for r in records if r["event"] == "recovery"]
    assert actions[:4] == ["cooldown", "cooldown", "revert", "cooldown"] and "perturb" in actions
    revert = next(r for r in records if r["event"] == "recovery" and r["action"] == "revert")
    assert revert["checkpoint"] == "step-0000004"
    assert any(r["event"] == "regime" and r["regime"] == "breakdown" for r in records)
    steps = [r for r in records if r["event"] == "step"]
    assert steps[-1]["lr_scale"] < 1.0
    assert json.loads((tmp_path / "run" / "checkpoints" / "step-0000014" / "state.json").read_text())["stable"] is False
