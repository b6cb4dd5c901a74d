"""TrainingRun on a real store: telemetry per DESIGN.md, checkpoints, exact resume, recovery events."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from meqg_mlx.config import to_yaml
from meqg_mlx.errors import MeqgError
from meqg_mlx.runs import RunDir
from meqg_mlx.telemetry import read_telemetry
from meqg_mlx.train.run import TrainingRun

from ..conftest import meqg
from ..processes import child, wait_until
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
    assert {"model", "copy_last", "context_mean", "ridge", "mlp"} <= set(summary.validation.tables["next"])
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


def test_a_measured_phi_over_the_threshold_starts_the_recovery(small_store_path, tmp_path):
    """No forced threshold: the Phi values a run measures, and a breakdown threshold between them. A second,
    identical run acts exactly at the first measurement above it, and not before."""
    config = run_config(8)
    TrainingRun(tmp_path / "probe", small_store_path, config).train()
    records, _ = read_telemetry(tmp_path / "probe" / "telemetry.jsonl")
    every = config.train.phi_every  # step records carry the last Phi between measurements
    measured = [(r["step"], r["phi"]) for r in records if r["event"] == "step" and r["step"] % every == 0]
    values = sorted({phi for _, phi in measured})
    assert len(measured) == 4 and len(values) >= 2 and all(0 <= phi <= 1 for phi in values), measured
    threshold = (values[-2] + values[-1]) / 2  # only the highest measurement is above it
    first = next(step for step, phi in measured if phi > threshold)
    config.regime.phi_breakdown = threshold
    TrainingRun(tmp_path / "run", small_store_path, config).train()
    records, _ = read_telemetry(tmp_path / "run" / "telemetry.jsonl")
    breakdowns = [r for r in records if r["event"] == "regime" and r["regime"] == "breakdown"]
    recoveries = [r for r in records if r["event"] == "recovery"]
    assert breakdowns and breakdowns[0]["step"] == first
    assert recoveries and recoveries[0]["step"] == first and recoveries[0]["action"] == "cooldown"
    steps = {r["step"]: r for r in records if r["event"] == "step"}
    assert steps[first]["phi"] == dict(measured)[first] > threshold  # the same run up to there


def binding_config(steps: int):
    """A config under which resuming is hard: the trust radius binds, the gate interval adapts."""
    config = run_config(steps)
    config.gate.trust_radius, config.gate.check_interval = 0.01, 4
    return config


def final_state(run_dir):
    """Weights, optimizer state and trainer state of a run's latest checkpoint, as numpy."""
    checkpoint = RunDir(run_dir).latest_checkpoint()
    arrays = {
        f"{name}:{key}": np.array(value)
        for name in ("model.safetensors", "optimizer.safetensors")
        for key, value in mx.load(str(checkpoint / name)).items()
    }
    return arrays, json.loads((checkpoint / "state.json").read_text())


def assert_same_state(a, b):
    (arrays_a, state_a), (arrays_b, state_b) = final_state(a), final_state(b)
    assert arrays_a.keys() == arrays_b.keys() and len(arrays_a) > 10
    for key in arrays_a:
        assert np.array_equal(arrays_a[key], arrays_b[key]), key
    assert state_a == state_b


def steps_once(run_dir) -> dict[int, float]:
    records, malformed = read_telemetry(RunDir(run_dir).telemetry_path)
    steps = [r["step"] for r in records if r["event"] == "step"]
    assert malformed == 0 and steps == sorted(set(steps)), steps
    return {r["step"]: r["objective"]["Delta"] for r in records if r["event"] == "step"}


def test_a_stop_between_checkpoints_resumes_bit_for_bit_under_a_binding_gate_and_recovery(small_store_path, tmp_path):
    """Stopped (as Ctrl-C stops it) at step 7, between checkpoints at 4 and 8, while the trust radius
    binds, the gate interval adapts and the recovery policy is acting: the resumed run's weights,
    optimizer state and counters equal the uninterrupted run's, bit for bit."""
    config = binding_config(12)
    config.regime.revert_after, config.regime.perturb_after = 2, 3

    def breakdown_after_step_5(run):
        return lambda record: record["step"] >= 5 and setattr(run.config.regime, "phi_breakdown", -1.0)

    straight = TrainingRun(tmp_path / "straight", small_store_path, config)
    straight.train(on_step=breakdown_after_step_5(straight))
    split = TrainingRun(tmp_path / "split", small_store_path, config)
    split.train(on_step=breakdown_after_step_5(split), should_stop=lambda: split.trainer.state.step == 7)
    assert split.trainer.state.step == 7
    resumed = TrainingRun(tmp_path / "split", resume=True)
    resumed.config.regime.phi_breakdown = -1.0  # the intervention of step 5 on, as in the straight run
    resumed.train()

    records, _ = read_telemetry(tmp_path / "straight" / "telemetry.jsonl")
    gates = [r["gate"] for r in records if r["event"] == "step" and r["gate"]]
    assert any(g["step_norm"] >= 0.999 * g["trust_radius"] for g in gates), "the trust radius never bound"
    assert len(gates) < 12, "the gate interval never adapted"
    assert any(r["event"] == "recovery" for r in records if r["step"] > 7), "no recovery action after the stop"
    assert steps_once(tmp_path / "split") == steps_once(tmp_path / "straight")
    assert_same_state(tmp_path / "split", tmp_path / "straight")


def straight_run_and_its_config(store_path, tmp_path) -> Path:
    """A straight 12-step run under `binding_config` in tmp_path/straight, what a killed run must end as;
    returns the config file the killed run trains with."""
    config = binding_config(12)
    TrainingRun(tmp_path / "straight", store_path, config).train()
    config_file = tmp_path / "config.yaml"
    config_file.write_text(to_yaml(config))
    return config_file


def killed_by(script: str, store_path, config_file: Path, run: Path) -> Path:
    """Train `run` in a child running `script`, which SIGKILLs itself at the moment it is written for."""
    with child([sys.executable, "-c", script, str(run), str(store_path), str(config_file)]) as process:
        process.wait(timeout=600)
    assert process.returncode == -signal.SIGKILL
    return run


KILLED_WHILE_SAVING = """
import os, signal, sys
from meqg_mlx.config import load_config  # first: meqg_mlx sets MLX's BLAS up when MLX loads
from meqg_mlx.train import checkpoint
from meqg_mlx.train.run import TrainingRun
import mlx.core as mx

save = mx.save_safetensors
def save_then_die(path, arrays):
    save(path, arrays)
    if "step-0000008" in path:  # weights written into the temp dir, optimizer next: kill -9 now
        os.kill(os.getpid(), signal.SIGKILL)
checkpoint.mx = type("mx", (), {"save_safetensors": staticmethod(save_then_die)})
TrainingRun(sys.argv[1], sys.argv[2], load_config(sys.argv[3])).train()
"""


def test_kill_9_while_a_checkpoint_is_saved_then_resume(small_store_path, tmp_path):
    config_file = straight_run_and_its_config(small_store_path, tmp_path)
    run = killed_by(KILLED_WHILE_SAVING, small_store_path, config_file, tmp_path / "killed")
    assert RunDir(run).latest_checkpoint().name == "step-0000004"  # the one being saved never became latest
    records, _ = read_telemetry(RunDir(run).telemetry_path)
    assert max(r["step"] for r in records if r["event"] == "step") == 8  # steps 5-8 ran, then were lost
    debris = [p.name for p in RunDir(run).checkpoints.iterdir() if p.name.startswith(".step-0000008")]
    assert debris, "the half-written checkpoint should be there to clean up"
    resumed = TrainingRun(run, resume=True)
    assert resumed.telemetry.superseded > 0
    resumed.train()
    assert steps_once(run) == steps_once(tmp_path / "straight")
    assert_same_state(run, tmp_path / "straight")
    assert no_debris(run)


def no_debris(run) -> bool:
    """Only the checkpoints a straight run writes, and `latest`."""
    names = sorted(p.name for p in RunDir(run).checkpoints.iterdir())
    return names == ["latest", "step-0000004", "step-0000008", "step-0000012"]


KILLED_BEFORE_LATEST = """
import os, signal, sys
from meqg_mlx.config import load_config  # first: meqg_mlx sets MLX's BLAS up when MLX loads
from meqg_mlx.runs import RunDir
from meqg_mlx.train.run import TrainingRun

point = RunDir.point_latest
def point_then_die(self, checkpoint):
    if checkpoint.name == "step-0000008":  # published by its rename, not yet named by latest: kill -9 now
        os.kill(os.getpid(), signal.SIGKILL)
    point(self, checkpoint)
RunDir.point_latest = point_then_die
TrainingRun(sys.argv[1], sys.argv[2], load_config(sys.argv[3])).train()
"""


def test_kill_9_between_publishing_a_checkpoint_and_naming_it_latest_then_resume(small_store_path, tmp_path):
    """The later checkpoint is complete but `latest` never named it: the resume starts from the earlier one,
    discards the later (a recovery revert would otherwise take it for its own) and ends where a straight run
    does."""
    config_file = straight_run_and_its_config(small_store_path, tmp_path)
    run = killed_by(KILLED_BEFORE_LATEST, small_store_path, config_file, tmp_path / "killed")
    assert RunDir(run).latest_checkpoint().name == "step-0000004" and RunDir(run).checkpoint(8).is_dir()
    resumed = TrainingRun(run, resume=True)
    resumed.train()
    records, _ = read_telemetry(RunDir(run).telemetry_path)
    assert [r["discarded"] for r in records if r["event"] == "checkpoint" and r["action"] == "resumed"] == [
        ["step-0000008"]
    ]
    assert steps_once(run) == steps_once(tmp_path / "straight")
    assert_same_state(run, tmp_path / "straight")
    assert no_debris(run)


def test_meqg_train_killed_at_any_moment_resumes_exactly(small_store_path, tmp_path):
    """A real `meqg train` process, SIGKILLed from outside once it has passed step 6 (mid-step, mid-save
    or between: wherever it is), then `meqg train --resume`: the same steps and state as a straight run."""
    config_file = straight_run_and_its_config(small_store_path, tmp_path)
    run = tmp_path / "killed"
    command = ["train", "--store", str(small_store_path), "--run", str(run), "--config", str(config_file)]
    exe = Path(sys.executable).with_name("meqg")

    def past_step_6() -> bool:
        records = read_telemetry(RunDir(run).telemetry_path)[0] if RunDir(run).telemetry_path.exists() else []
        return any(r["event"] == "step" and r["step"] >= 6 for r in records)

    with child([str(exe), *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:
        wait_until(past_step_6, 300, "the run past step 6", interval=0.01, process=process)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    resumed = meqg("train", "--run", str(run), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert steps_once(run) == steps_once(tmp_path / "straight")
    assert_same_state(run, tmp_path / "straight")
    assert no_debris(run)


def test_a_store_without_documents_trains_on_walks_and_keeps_its_relation_ids(graph_store, tmp_path):
    """A lexicon alone (no document of 3+ concepts) trains on relation walks; the run records its relation
    vocabulary, a resume reads the same ids, and a store that grew a new relation type is refused."""
    import shutil

    from meqg_mlx.concepts.store import ConceptStore, NewConcept
    from meqg_mlx.config import load_run
    from meqg_mlx.eval.evaluate import evaluate_run

    store_path = tmp_path / "lexicon"
    shutil.copytree(graph_store.uri, store_path)
    config = small_config(steps=4, eval_every=4, checkpoint_every=4, validation_edges=50, baseline_mlp_steps=5)
    summary = TrainingRun(tmp_path / "run", store_path, config).train()
    assert summary.step == 4 and set(summary.validation.tables) == {"antonym", "hypernym", "hyponym"}
    records = read_telemetry(tmp_path / "run" / "telemetry.jsonl")[0]
    assert {r["batch"] for r in records if r["event"] == "step"} == {"walks"}
    vocabulary = ["next", "antonym", "hypernym", "hyponym"]
    assert load_run(RunDir(tmp_path / "run"))[1].vmm.relations == vocabulary
    resumed = TrainingRun(tmp_path / "run", resume=True, steps=6)
    assert resumed.trainer.vocabulary.names == tuple(vocabulary) and resumed.train().step == 6
    report = evaluate_run(tmp_path / "run", horizon=2)  # held-out hypernym chains, no documents to cut
    assert report.chains > 0 and "knn_successor@8" in report.baselines
    store = ConceptStore.open(store_path)
    first = store.reserve_ids(1)
    store.add(
        [NewConcept(first, "a wheel", np.eye(store.dim, dtype=np.float32)[0], relations=[(1, "part_holonym", 1.0)])]
    )
    with pytest.raises(MeqgError, match="lacks: the store grew new relation types after the run began"):
        TrainingRun(tmp_path / "run", resume=True, steps=8)


def test_a_new_run_that_fails_before_its_first_checkpoint_leaves_nothing_behind(
    small_store_path, tmp_path, monkeypatch
):
    """The first step writes the memory's reads to $MEQG_HOME/cache; a file in its place fails that step.
    Nothing could be resumed, so the run directory goes, and the same command then starts afresh."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "cache").write_text("not a directory")
    monkeypatch.setenv("MEQG_HOME", str(home))
    run = tmp_path / "run"
    with pytest.raises(OSError):
        TrainingRun(run, small_store_path, run_config(4)).train()
    assert not run.exists()
    (home / "cache").unlink()
    assert TrainingRun(run, small_store_path, run_config(4)).train().step == 4


def test_the_run_config_says_the_concept_dim_the_model_uses(small_store_path, tmp_path):
    """The store decides the concept width: a config asking for another gets the store's, in config.yaml too."""
    config = run_config(1)
    config.vmm.concept_dim = 768
    TrainingRun(tmp_path / "run", small_store_path, config)
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "concept_dim: 384" in saved and "768" not in saved
