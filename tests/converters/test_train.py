"""Training the PyTorch twin: the MLX trainer's steps in PyTorch, and torchrun + DDP (gloo) on 2 processes."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from meqg_converters.train import TorchTrainer
from meqg_mlx.config import load_config, save_config
from meqg_mlx.runs import RunDir
from meqg_mlx.telemetry import read_telemetry
from meqg_mlx.train.run import TrainingRun
from meqg_mlx.train.trainer import Trainer
from meqg_tui.state import RunState

from ..conftest import meqg
from ..processes import child, wait_until
from ..train.test_trainer import small_config


def gate_config(**train):
    """Small, and a gate that backtracks and rejects now and then, so ranks have decisions to agree on."""
    config = small_config(learning_rate=3e-3, warmup_steps=2, **train)
    config.gate.alpha, config.gate.l_mod = 0.9, 1.0
    return config


def step_records(run) -> list[dict]:
    return [r for r in read_telemetry(RunDir(run).telemetry_path)[0] if r["event"] == "step"]


def decision_digests(output: str) -> dict[int, str]:
    """'rank R: ... gate decisions DIGEST' -> {R: DIGEST}. Each rank prints its line in one write,
    but it may land after another rank's unfinished progress line, so it is found anywhere."""
    return {int(rank): digest for rank, digest in re.findall(r"rank (\d+): [^\n]*?gate decisions ([0-9a-f]+)", output)}


def test_the_twin_takes_the_mlx_trainers_steps(small_store):
    """Same init, batches, objective, AdamW and gate: without the ledger's Monte Carlo (whose random
    numbers differ between the engines) the two trainers take the same steps."""
    config = gate_config(steps=20)
    config.objective.lambda_mod = 0.0
    mlx, twin = Trainer(small_store, config), TorchTrainer(small_store, config)
    for _ in range(5):
        a, b = mlx.step(), twin.step()
        for name in ("Delta", "distance", "contrastive", "planner_nll", "balance", "context"):
            assert b.terms[name] == pytest.approx(a.terms[name], rel=1e-4), name
        assert (a.gate.accepted, a.gate.retries, a.gate.failed) == (b.gate.accepted, b.gate.retries, b.gate.failed)
        assert b.expert_load == a.expert_load


def test_runs_move_between_engines_and_resume_where_they_stopped(small_store_path, tmp_path):
    """MLX 3 steps, then the twin 3 more from its checkpoint, then MLX again: the losses of one MLX run."""
    config = gate_config(steps=9, checkpoint_every=3)
    config.objective.lambda_mod = 0.0
    TrainingRun(tmp_path / "straight", small_store_path, config).train()
    run = tmp_path / "mixed"
    first = TrainingRun(run, small_store_path, config)
    first.train(should_stop=lambda: first.trainer.state.step >= 3)  # stops with a checkpoint, as Ctrl-C does
    second = TrainingRun(run, resume=True, make_trainer=TorchTrainer)
    second.train(should_stop=lambda: second.trainer.state.step >= 6)
    TrainingRun(run, resume=True).train()
    straight, mixed = step_records(tmp_path / "straight"), step_records(run)
    assert [r["step"] for r in mixed] == list(range(1, 10))
    np.testing.assert_allclose([r["loss"] for r in mixed], [r["loss"] for r in straight], rtol=1e-4)


def test_two_ranks_train_as_one_from_a_store_on_s3_and_the_run_answers(s3_store, tmp_path, embedder):
    """One torchrun launch, checked for everything a 2-rank run must do: each rank reads its shards straight
    from S3, both take one process's gate decisions and losses, rank 0 prints what `meqg train` prints,
    and the monitor and `meqg run` read the run."""
    from meqg_mlx.concepts import build_store

    build_store(s3_store, ["stdlib:json,heapq,textwrap,string"], embedder)
    config_file = tmp_path / "config.yaml"
    save_config(gate_config(steps=12, checkpoint_every=4, eval_every=12, phi_every=4), config_file)
    args = ["train", "--engine", "torch", "--nproc", "2", "--store", s3_store]
    result = meqg(*args, "--run", str(tmp_path / "run2"), "--config", str(config_file), timeout=600)
    assert result.returncode == 0, result.stderr
    assert RunDir(tmp_path / "run2").read_meta()["store"] == s3_store
    one_process = TrainingRun(tmp_path / "run1", s3_store, load_config(config_file), make_trainer=TorchTrainer)
    one_process.train()  # as `--nproc 1` runs, without torchrun's launch
    # every rank took the same gate decisions, and the same as one process
    digests = decision_digests(result.stdout)
    assert set(digests) == {0, 1}, f"a rank said nothing; out: {result.stdout[-1500:]} err: {result.stderr[-1500:]}"
    assert digests[0] == digests[1] == one_process.trainer.decisions.hexdigest()[:12]
    # rank 0 says what `meqg train` says: its progress line, then the summary and the validation tables
    assert re.search(r"step 12/12 loss [0-9.]+ Delta [0-9.]+ accept \d+%.* Phi [0-9.]+ .* concepts/s", result.stdout)
    assert f"{tmp_path / 'run2'}: finished at step 12" in result.stdout
    assert "r@1 higher is better" in result.stdout and "model - " in result.stdout
    two, one = step_records(tmp_path / "run2"), step_records(tmp_path / "run1")
    assert [r["step"] for r in two] == list(range(1, 13))
    assert any(r["gate"]["retries"] for r in two)  # the gate had decisions to make
    # the same global batch split in two: sums in another order (float32), nothing else
    np.testing.assert_allclose([r["loss"] for r in two], [r["loss"] for r in one], rtol=1e-4)
    records = read_telemetry(RunDir(tmp_path / "run2").telemetry_path)[0]
    final = [r for r in records if r["event"] == "eval"][-1]["tables"]["next"]
    assert np.isfinite(final["model"]["l2"]) and {"copy_last", "ridge", "mlp"} <= set(final)
    assert np.mean([r["loss"] for r in two[-3:]]) < np.mean([r["loss"] for r in two[:3]])  # it learns
    state = RunState()  # what `meqg monitor` shows
    for record in records:
        state.apply(record)
    assert state.step == 12 and state.ended == "finished" and len(state.series["loss"][0]) == 12
    assert state.accepted + state.rejected == 12 and state.series["phi"][1][-1] is not None
    answer = meqg("run", "Sort a list. Then reverse it.", "--run", str(tmp_path / "run2"), "--json")
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["telemetry"]["steps"]


def ranks_of(parent: int) -> dict[int, int]:
    """{rank: pid} of the torchrun workers under process `parent`."""
    found = {}
    for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
        try:
            command = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            environ = dict(
                v.split(b"=", 1) for v in open(f"/proc/{pid}/environ", "rb").read().split(b"\0") if b"=" in v
            )
        except OSError:
            continue
        if b"meqg_converters.train" in command and b"torch.distributed.run" not in command and b"RANK" in environ:
            if _descends(pid, parent):
                found[int(environ[b"RANK"])] = pid
    return found


def _descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
        except OSError:
            return False
    return False


def test_a_killed_rank_ends_the_run_in_one_line_and_it_resumes(small_store_path, tmp_path):
    config_file, run = tmp_path / "config.yaml", tmp_path / "run"
    save_config(gate_config(steps=2000, checkpoint_every=5), config_file)
    exe = os.path.join(os.path.dirname(sys.executable), "meqg")
    args = [exe, "train", "--engine", "torch", "--nproc", "2", "--store", str(small_store_path), "--run", str(run)]
    with child([*args, "--config", str(config_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        wait_until(lambda: RunDir(run).latest_checkpoint(), 300, "a first checkpoint", process=p)
        ranks = wait_until(lambda: ranks_of(p.pid) if len(ranks_of(p.pid)) == 2 else None, 60, "two workers")
        os.kill(ranks[0], signal.SIGKILL)  # rank 0: no checkpoint on the way out, the resume replays steps
        killed = time.monotonic()
        _, err = p.communicate(timeout=120)
    assert time.monotonic() - killed < 60  # gloo notices the closed connection; no collective waits forever
    # rank 1 sees the closed connection, or torchrun's SIGTERM when it notices the death first
    assert p.returncode == 2 and err.count("\n") == 1, err
    assert err.startswith(("error: rank 1: lost another rank", "error: rank 1: stopped by SIGTERM")), err
    reached = max(r["step"] for r in step_records(run))
    assert int(RunDir(run).latest_checkpoint().name.split("-")[1]) % 5 == 0
    # resumed in this process (`--nproc 1`'s path): each rank of a 2-rank resume loads this same checkpoint,
    # and the test above launches 2 ranks already
    TrainingRun(run, resume=True, steps=reached + 3, make_trainer=TorchTrainer).train()
    assert [r["step"] for r in step_records(run)] == list(range(1, reached + 4))  # each step once
