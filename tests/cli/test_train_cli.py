"""`meqg train` as a user runs it: progress, metrics, Ctrl-C checkpoints, resume, one-line errors."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from meqg_cli.train_commands import train_with_torchrun
from meqg_mlx.errors import MeqgError

from ..conftest import cli, meqg
from ..processes import child, wait_until

SMALL = """\
vmm: {d_model: 64, n_layers: 2, d_state: 16, head_dim: 32, chunk_size: 16, n_experts: 4, d_ff: 128,
      rvq_levels: 2, rvq_codes: 16}
train: {batch_size: 8, seq_len: 16, store_negatives: 128, rvq_fit_steps: 5, validation_windows: 64,
        validation_fraction: 0.2, eval_every: 0, checkpoint_every: 50, kappa_every: 0, baseline_mlp_steps: 50}
"""


def small_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return path


def train_args(store: Path, run: Path, steps: int, tmp_path: Path) -> list[str]:
    """`meqg train` on the small config: the arguments after `meqg`."""
    return ["train", "--store", str(store), "--run", str(run), "--steps", str(steps),
            "--config", str(small_yaml(tmp_path))]  # fmt: skip


def test_train_prints_progress_and_metrics_then_resumes(small_store_path, tmp_path):
    run = tmp_path / "run"
    result = meqg(*train_args(small_store_path, run, 4, tmp_path))
    assert result.returncode == 0, result.stderr
    assert "step 4/4" in result.stdout and "accept" in result.stdout and "Phi" in result.stdout
    assert "finished at step 4" in result.stdout
    for method in ("model", "copy_last", "context_mean", "ridge", "knn_successor@8", "mlp", "transformer", "describes"):
        assert method in result.stdout
    assert "model - " in result.stdout and "95% paired bootstrap" in result.stdout and "candidates" in result.stdout
    again = cli("train", "--store", str(small_store_path), "--run", str(run))
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "--resume" in again.stderr
    more = meqg("train", "--run", str(run), "--resume", "--steps", "6")
    assert more.returncode == 0, more.stderr
    assert "finished at step 6" in more.stdout
    behind = cli("train", "--run", str(run), "--resume", "--steps", "3")
    assert behind.returncode == 2 and behind.stderr.count("\n") == 1
    assert "already at step 6, so --steps 3 leaves nothing to train" in behind.stderr
    assert "steps: 6" in (run / "config.yaml").read_text()  # the refused call changed nothing


def test_ctrl_c_checkpoints_and_exits_cleanly(small_store_path, tmp_path):
    run = tmp_path / "run"
    exe = Path(sys.executable).with_name("meqg")
    telemetry = run / "telemetry.jsonl"
    with child(
        [str(exe), *train_args(small_store_path, run, 500, tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    ) as process:
        wait_until(
            lambda: telemetry.exists() and telemetry.read_text().count('"event":"step"') >= 3,
            240,
            "three training steps",
            0.2,
            process,
        )
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "stopped at step" in out
    step = int(out.split("stopped at step ")[1].split(",")[0])
    assert 3 <= step < 500 and (run / "checkpoints" / f"step-{step:07d}").is_dir()


def test_bad_train_input_is_a_one_line_error(small_store_path, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {stepz: 3}\n")
    cases = [
        (["--store", str(small_store_path), "--run", str(tmp_path / "a"), "--config", str(bad)], "train.stepz"),
        (["--run", str(tmp_path / "none"), "--resume"], "no run to resume"),
        (["--store", str(tmp_path / "missing"), "--run", str(tmp_path / "b")], "missing"),
        (["--store", str(small_store_path), "--run", str(tmp_path / "c"), "--steps", "0"], "at least 1"),
    ]
    for args, message in cases:
        result = cli("train", *args)
        assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1, result.stderr


RANK_FAILS = """
import os, signal, time
import torch.distributed as dist
dist.init_process_group("gloo")
if dist.get_rank() == 1:
    {failure}
time.sleep(300)  # rank 0 ends by torchrun's SIGTERM only, so rank 1 is the first failure it observes
"""


@pytest.mark.parametrize(
    "failure, message",
    [
        ("raise ValueError('rank one cannot go on')", "rank 1 failed (exit code 1): ValueError: rank one cannot go on"),
        ("os.kill(os.getpid(), signal.SIGKILL)", "rank 1 failed (SIGKILL)"),
        (
            "import sys; sys.stderr.write('terminate called after throwing gloo::IoException\\n'); os.abort()",
            "rank 1 failed (SIGABRT): terminate called after throwing gloo::IoException",
        ),
    ],
)
def test_a_rank_that_fails_without_a_meqg_error_is_named_with_its_cause(tmp_path, failure, message):
    """torchrun prints a rank's traceback with a `[rank1]: ` prefix and ends with its own report; the
    one line names the rank torchrun found first and what it raised (or the signal that ended it)."""
    script = tmp_path / "rank_fails.py"
    script.write_text(RANK_FAILS.format(failure=failure))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script)]
    with pytest.raises(MeqgError) as raised:
        train_with_torchrun(command)
    assert str(raised.value) == message
