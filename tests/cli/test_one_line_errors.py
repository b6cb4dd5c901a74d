"""What a careless user (or a crash) leaves behind gets one line and a non-zero exit, never a traceback."""

import json
import os
import shutil

import pytest

from meqg_mlx.runs import RunDir

from ..conftest import cli, meqg
from .test_cli import one_line_error
from .test_train_cli import small_yaml, train_args


HEAD = '{"format": "meqg-concept-store", "dim": 384, "origin_model": "m"'


@pytest.mark.parametrize(
    "meta, reason",
    [
        ("[]", "it holds list, not an object"),
        ("null", "it holds NoneType, not an object"),
        (HEAD + ', "next_id": 0, "vector_columns": 3}', "vector_columns"),
        (HEAD + ', "next_id": 0, "vector_columns": {"g": {"dim": "x"}}}', "vector_columns"),
        (HEAD + "}", "next_id"),
    ],
    ids=["list", "null", "columns-not-a-map", "column-without-dim", "no-next-id"],
)
def test_damaged_store_metadata(small_store_path, tmp_path, meta, reason):
    store = tmp_path / "store"
    shutil.copytree(small_store_path, store)
    (store / "meqg_store.json").write_text(meta)
    result = cli("store", "stats", "--store", str(store))
    one_line_error(result, f"corrupt store metadata {store / 'meqg_store.json'}")
    assert reason in result.stderr


def test_missing_lance_data_files(small_store_path, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(small_store_path, store)
    # every data file: which ones the latest version still uses (not those of compacted-away versions)
    # is in Lance's manifest, which meqg does not read
    for data_file in (store / "lance" / "concepts.lance" / "data").glob("*.lance"):
        data_file.unlink()
    one_line_error(cli("store", "search", "--store", str(store), "sorting"), "concepts table unreadable")


def test_arguments_that_are_not_utf8(small_store_path):
    not_utf8 = os.fsdecode(b"caf\xe9")  # how Python hands a Latin-1 argument to the program
    one_line_error(meqg("encode", not_utf8), "text #0 is not valid UTF-8")
    one_line_error(meqg("store", "search", "--store", str(small_store_path), not_utf8), "not valid UTF-8")


def test_run_directories_that_cannot_be_runs(small_store_path, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a run")
    one_line_error(cli(*train_args(small_store_path, a_file, 2, tmp_path)), "is a file, not a run directory")
    one_line_error(cli("run", "Sort a list.", "--run", str(a_file)), "is a file, not a run directory")
    one_line_error(
        cli(*train_args(small_store_path, a_file / "run", 2, tmp_path)), f"cannot write the run directory {a_file}/run"
    )


def test_resume_episodes_and_eval_need_a_checkpoint(small_store_path, tmp_path):
    run = RunDir(tmp_path / "run")
    run.create(small_store_path, small_yaml(tmp_path).read_text())  # a run killed before its first checkpoint
    one_line_error(cli("train", "--run", str(run), "--resume"), "has no checkpoint yet")
    for command in (["run", "Sort a list.", "--run", str(run)], ["eval", "--run", str(run)]):
        one_line_error(cli(*command), f"no checkpoint in {run}: train it first")


def test_a_checkpoint_whose_state_lacks_keys(small_store_path, tmp_path):
    run = tmp_path / "run"
    assert meqg(*train_args(small_store_path, run, 2, tmp_path)).returncode == 0
    state_path = RunDir(run).latest_checkpoint() / "state.json"
    state = json.loads(state_path.read_text())
    del state["rng"], state["gate_schedule"]
    state_path.write_text(json.dumps(state))
    one_line_error(cli("train", "--run", str(run), "--resume", "--steps", "3"), "state.json lacks gate_schedule, rng")
    state["gate_schedule"], state["rng"] = "x", {"bit_generator": "nope"}
    state_path.write_text(json.dumps(state))
    one_line_error(cli("train", "--run", str(run), "--resume", "--steps", "3"), "state.json has a bad value")
