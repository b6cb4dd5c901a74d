import pytest

from meqg_mlx.errors import MeqgError
from meqg_mlx.runs import RunDir
from meqg_mlx.train.checkpoint import load_checkpoint, save_checkpoint
from meqg_mlx.train.trainer import Trainer

from .test_trainer import small_config


def test_resumed_run_reproduces_the_uninterrupted_losses(small_store, tmp_path):
    config = small_config(steps=6)
    straight = Trainer(small_store, config)
    expected = [straight.step().terms["Delta"] for _ in range(6)]

    first = Trainer(small_store, config)
    done = [first.step().terms["Delta"] for _ in range(3)]
    save_checkpoint(tmp_path / "run", first)
    resumed = Trainer(small_store, config)
    load_checkpoint(RunDir(tmp_path / "run").latest_checkpoint(), resumed)
    assert resumed.state.step == 3
    rest = [resumed.step().terms["Delta"] for _ in range(3)]
    assert done + rest == expected


def checkpoint_cut_in_half(small_store, run, name: str):
    """A one-step checkpoint in `run` whose file `name` lost its second half."""
    trainer = Trainer(small_store, small_config(steps=2))
    trainer.step()
    path = save_checkpoint(run, trainer)
    data = (path / name).read_bytes()
    (path / name).write_bytes(data[: len(data) // 2])
    return path


def test_corrupt_checkpoint_is_a_one_line_error(small_store, tmp_path):
    path = checkpoint_cut_in_half(small_store, tmp_path / "run", "model.safetensors")
    with pytest.raises(MeqgError, match="corrupt checkpoint"):
        load_checkpoint(path, Trainer(small_store, small_config(steps=2)))


def test_a_corrupt_optimizer_file_and_a_dangling_latest_are_one_line_errors(small_store, tmp_path):
    path = checkpoint_cut_in_half(small_store, tmp_path / "run", "optimizer.safetensors")
    with pytest.raises(MeqgError, match="corrupt checkpoint") as error:
        load_checkpoint(path, Trainer(small_store, small_config(steps=2)))
    assert "\n" not in str(error.value)
    run = RunDir(tmp_path / "run")
    run.point_latest(run.checkpoints / "step-0000099")  # a checkpoint removed by hand, `latest` left naming it
    with pytest.raises(MeqgError, match="latest names step-0000099, which is not there") as error:
        run.latest_checkpoint()
    assert "\n" not in str(error.value)
