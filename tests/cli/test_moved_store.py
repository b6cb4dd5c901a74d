"""A run whose store moved: every command that opens the run takes --store, checked against the store the
run recorded (its encoder, dim and table version), and says what to do when the store is not there."""

import json
import shutil

import pytest

from meqg_mlx.train.run import TrainingRun

from ..conftest import cli, meqg
from ..train.test_trainer import small_config
from .test_serve_cli import free_port


@pytest.fixture(scope="module")
def moved(small_store_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("moved")
    shutil.copytree(small_store_path, root / "store")
    TrainingRun(root / "run", root / "store", small_config(steps=2)).train()
    (root / "store").rename(root / "elsewhere")
    return root / "run", root / "elsewhere"


def one_line(result, *fragments):
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_commands_on_a_run_whose_store_moved_say_so_and_take_store(moved):
    run, store = moved
    recorded = json.loads((run / "run.json").read_text())
    assert recorded["store_record"]["dim"] == 384 and recorded["store_record"]["concepts"] > 100
    gone = "is not there (moved or deleted): pass --store with where it is now"
    one_line(cli("run", "Sort a list.", "--run", str(run)), gone)
    one_line(cli("decode", "--run", str(run), "parse JSON"), gone)
    one_line(cli("inverter", "train", "--run", str(run), "--steps", "1"), gone)
    episode = meqg("run", "Sort a list.", "--run", str(run), "--store", str(store), "--json")
    assert episode.returncode == 0 and json.loads(episode.stdout)["concepts"], episode.stderr
    decoded = meqg("decode", "--run", str(run), "--store", str(store), "parse JSON from a string", "--json")
    assert decoded.returncode == 0 and json.loads(decoded.stdout)[0]["nearest_text"], decoded.stderr
    evaluated = meqg("eval", "--run", str(run), "--store", str(store), "--horizon", "1", "--tool-budgets", "", "--json")
    assert evaluated.returncode == 0 and json.loads(evaluated.stdout)["chains"] > 0, evaluated.stderr
    inverter = meqg("inverter", "train", "--run", str(run), "--store", str(store), "--steps", "1")
    assert inverter.returncode == 0 and "finished at step 1" in inverter.stdout, inverter.stderr


def test_a_store_that_is_not_the_runs_is_refused(moved, graph_store, tmp_path):
    run, _ = moved
    other = graph_store.uri  # another encoder's vectors, 32-d
    for command in (["run", "Sort a list."], ["decode", "parse JSON"]):
        one_line(cli(*command, "--run", str(run), "--store", other), f"{other} holds ", "the run trained on")
    served = meqg("serve", "--run", str(run), "--store", other, "--port", str(free_port()))  # after "loading"
    assert served.returncode == 2 and served.stderr.splitlines()[-1].startswith(f"error: {other} holds "), served.stderr
