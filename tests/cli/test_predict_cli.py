"""`meqg predict`: the model's top-k next concepts from a text or a store concept, one step or several."""

import json

import pytest

from meqg_mlx.concepts import ConceptStore
from meqg_mlx.train.run import TrainingRun

from ..conftest import cli, meqg
from ..train.test_trainer import small_config


@pytest.fixture(scope="module")
def run(small_store_path, tmp_path_factory):
    path = tmp_path_factory.mktemp("predict") / "run"
    TrainingRun(path, small_store_path, small_config(steps=3)).train()
    return path


def test_predict_names_k_concepts_per_step_from_an_id_or_a_text(run, small_store_path):
    store = ConceptStore.open(small_store_path)
    row = next(r for r in store.columns(["concept_id", "text", "relations"]).to_pylist()
               if any(x["type"] == "defined_in" for x in r["relations"] or []))  # fmt: skip
    found = meqg("predict", "--run", str(run), "--id", str(row["concept_id"]), "-k", "4", "--steps", "2",
                 "--relation", "defined_in", "--json")  # fmt: skip
    assert found.returncode == 0, found.stderr
    answer = json.loads(found.stdout)
    assert answer["start"] == row["text"] and answer["relation"] == "defined_in" and len(answer["steps"]) == 2
    for step in answer["steps"]:
        cosines = [c["cosine"] for c in step]
        assert len(step) == 4 and cosines == sorted(cosines, reverse=True) and all(c["text"] for c in step)
    shown = [c["id"] for step in answer["steps"] for c in step]
    assert row["concept_id"] not in shown  # the start is context, never an answer
    assert answer["steps"][0][0]["id"] not in [c["id"] for c in answer["steps"][1]]  # nor is what was fed on
    texts = [r["text"] for r in store.get([c["id"] for c in answer["steps"][0]])]
    assert texts == [c["text"] for c in answer["steps"][0]]
    printed = meqg("predict", "--run", str(run), "parse JSON from a string")
    assert printed.returncode == 0 and "following next:" in printed.stdout and " step 1" in printed.stdout
    assert printed.stdout.count("\n   1. ") == 1 and "   5. " in printed.stdout  # k 5 by default


def test_bad_predict_input_is_one_line(run):
    for args, reason in (
        ([], "give a TEXT to start from or --id ID"),
        (["text", "--id", "3"], "not both or neither"),
        (["  "], "is empty"),
        (["--id", "99999999"], "no concept with id 99999999"),
        (["sort", "--relation", "meronym"], "unknown relation 'meronym'; this run knows next"),
    ):
        done = cli("predict", "--run", str(run), *args)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and reason in done.stderr, (args, done.stderr)
