"""One run's multi-step evaluation end to end on the small real store, and the chains file's errors."""

import json

import mlx.core as mx
import numpy as np
import pytest

from meqg_mlx.concepts.store import ConceptStore
from meqg_mlx.errors import InputError
from meqg_mlx.eval.evaluate import DEFAULT_PREFIX, evaluate_chains, evaluate_run
from meqg_mlx.eval.tasks import held_out_chains, read_chains_file, store_candidates
from meqg_mlx.trained import TrainedRun
from meqg_mlx.vmm.model import VMM


def test_a_run_is_evaluated_on_its_held_out_chains(trained_run_path):
    report = evaluate_run(trained_run_path, horizon=4)
    assert report.chains > 0 and report.calibration_chains > 0 and report.temperature > 0
    cascade = np.array(report.cascade_fail)
    assert len(cascade) == 4 and np.all(np.diff(cascade) >= 0) and 0 <= cascade[0] <= 1
    assert cascade[0] == pytest.approx(report.free_running_error[0])  # one step: no cascade yet
    assert report.teacher_forced_error[0] == pytest.approx(report.free_running_error[0])  # same inputs at step 1
    assert np.all(np.array(report.cascade_fail_top5) <= cascade + 1e-12)
    assert all(0 <= e <= 1 for e in report.ece) and all(0 <= b <= 1 for b in report.brier)
    assert report.ece_per_step[0] == pytest.approx(report.ece[0]) and len(report.brier_per_step) == 4
    assert sum(report.reliability["count"]) > 0 and len(report.reliability["edges"]) == 16
    json.dumps(report.as_dict())
    # the report is the checkpoint's: the same chains through the loaded model give it again, and through an
    # untrained model of the same shape (about a copy of the last concept here) something else
    trained = TrainedRun.open(trained_run_path)
    candidates = store_candidates(trained.store, trained.table)
    chains = held_out_chains(
        trained.store, trained.table, trained.config.train.validation_fraction, DEFAULT_PREFIX + 4, trained.vocabulary
    )
    again = evaluate_chains(trained.next_vectors, candidates, chains)
    assert again.cascade_fail == report.cascade_fail and again.temperature == pytest.approx(report.temperature)
    mx.random.seed(0)
    trained.__dict__["model"] = VMM(trained.args)  # replaces the loaded checkpoint (a cached property)
    untrained = evaluate_chains(trained.next_vectors, candidates, chains)
    assert untrained.chains == report.chains
    assert (untrained.cascade_fail, untrained.temperature) != (report.cascade_fail, pytest.approx(report.temperature))


def test_chains_from_a_file_may_hold_texts_the_store_lacks(trained_run_path, small_store_path, tmp_path, embedder):
    texts = ConceptStore.open(small_store_path).columns(["text"])["text"].to_pylist()[:40]
    lines = [[texts[i], texts[i + 1], f"An invented sentence number {i} about heaps."] for i in range(0, 36, 3)]
    path = tmp_path / "chains.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = evaluate_run(trained_run_path, chains_file=path, horizon=2, embedder=embedder)
    assert report.chains + report.calibration_chains == len(lines) and len(report.cascade_fail) == 2


def test_chains_with_relations_shorter_than_the_horizon(trained_run_path, small_store_path, tmp_path, embedder):
    """Object lines name each step's relation; plain lists mean `next`; chains of 2-3 texts under the
    default horizon 8 report as many steps as the longest chain has. An unknown relation is one line."""
    store = ConceptStore.open(small_store_path)
    rows = store.columns(["concept_id", "text", "relations"]).to_pylist()
    text_of = {r["concept_id"]: r["text"] for r in rows}
    lines = []
    for row in rows:
        for relation in row["relations"] or []:
            if relation["type"] == "defined_in" and relation["target_id"] in text_of and len(lines) < 16:
                lines.append({"texts": [row["text"], text_of[relation["target_id"]]], "relations": ["defined_in"]})
    lines += [[text_of[a], text_of[b], text_of[c]] for a, b, c in zip(*[iter(sorted(text_of)[:48])] * 3)]
    path = tmp_path / "chains.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = evaluate_run(trained_run_path, chains_file=path, embedder=embedder)
    assert report.chains + report.calibration_chains == len(lines) and len(report.cascade_fail) == 2
    # the baselines rolled out on the same chains, each step by the map fitted for its relation
    assert {"copy_last", "context_mean", "ridge", "knn_successor@8", "ridge+knn", "mlp", "transformer"} <= set(
        report.baselines
    )
    for cascade in report.baselines.values():
        assert len(cascade) == 2 and 0 <= min(cascade) <= max(cascade) <= 1  # h 2: only the 3-text chains
    assert min(report.baselines[n][0] for n in ("ridge", "knn_successor@8")) < report.baselines["copy_last"][0]
    snapped = evaluate_run(trained_run_path, chains_file=path, embedder=embedder, snap=True)
    assert snapped.snap and not report.snap and set(snapped.baselines) == set(report.baselines)
    assert snapped.cascade_fail[0] == report.cascade_fail[0]  # the first step is fed the same true concept
    path.write_text(json.dumps({"texts": ["a b", "c d"], "relations": ["meronym"]}) + "\n")
    with pytest.raises(InputError, match="chain 1: unknown relation 'meronym'; this run knows next, contains"):
        evaluate_run(trained_run_path, chains_file=path, embedder=embedder)


@pytest.mark.parametrize(
    "content, reason",
    [
        ("", "is empty"),
        ("\n\n", "is empty"),
        ('["a", "b"]\nnot json\n', ":2: invalid JSON"),
        ('{"a": 1}\n', ":1: a chain object holds texts and relations only"),
        ('"text"\n', ":1: each line must be a JSON list of texts or an object with one"),
        ('{"texts": ["a", "b", "c"], "relations": ["next"]}\n', ":1: 3 texts need 2 relations, got 1"),
        ('{"texts": ["a", "b"], "relations": [3]}\n', ":1: relations must be a list of relation names"),
        ('["only one"]\n', ":1: a chain needs at least 2 texts, got 1"),
        ('["fine", "   "]\n', ":1: text #1 is empty"),
    ],
)
def test_bad_chain_files_are_one_line_errors(tmp_path, content, reason):
    path = tmp_path / "chains.jsonl"
    path.write_text(content)
    with pytest.raises(InputError, match=reason.replace("[", "\\[")):
        read_chains_file(path)
    with pytest.raises(InputError, match="chains file not found"):
        read_chains_file(tmp_path / "missing.jsonl")


def test_meqg_eval_prints_the_table_and_writes_the_report(trained_run_path, tmp_path):
    from ..conftest import cli, meqg

    out = tmp_path / "report"
    args = ["eval", "--run", str(trained_run_path), "--horizon", "3", "--tool-budgets", "30", "--tool-tasks", "2"]
    result = meqg(*args, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "cascade" in result.stdout and len(result.stdout.strip().splitlines()) >= 5 + 2
    data = json.loads((out / "report.json").read_text())
    assert len(data["cascade_fail"]) == 3 and data["run"] == str(trained_run_path)
    assert data["tools"]["tool_answered"] == [1.0] and data["tools"]["tasks"] == 2
    # the chains table and the baselines' (a header and one row per horizon each), then the tools table
    # (header, 3 rows for 1 budget)
    assert (out / "report.md").read_text().count("\n| ") == (3 + 1) * 2 + (1 + 3)
    for png in ("cascade.png", "reliability.png", "tools.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = cli("eval", "--run", str(trained_run_path), "--out", str(out))
    assert again.returncode == 2 and again.stderr.strip() == f"error: {out} exists: choose a new --out directory"
    bad = cli("eval", "--run", str(trained_run_path), "--tool-budgets", "0.1,soon")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --tool-budgets: 'soon' is not a number of seconds"


def test_relation_chains_follow_contains_and_never_touch_a_trained_concept(small_store_path, monkeypatch):
    from meqg_mlx.corpus.relations import RelationVocabulary, held_out_rows
    from meqg_mlx.corpus.sequences import ConceptTable, documents, split_documents
    from meqg_mlx.eval import tasks
    from meqg_mlx.eval.tasks import held_out_chains, relation_chains

    store = ConceptStore.open(small_store_path)
    table = ConceptTable(store)
    training, _ = split_documents(documents(store), 0.2)
    trained = {int(i) for doc in training for i in doc.ids}
    held = held_out_rows(store, table, 0.2)
    vocabulary = RelationVocabulary.of_store(store)
    chains = relation_chains(store, table, trained, held, 8, vocabulary)
    assert chains and all(c.name.startswith("contains:") and 2 <= len(c.rows) <= 3 for c in chains)
    assert all((c.relations == vocabulary.id("contains")).all() for c in chains)  # each step follows contains
    keys = dict(zip(*(store.columns(["concept_id", "key"])[k].to_pylist() for k in ("concept_id", "key"))))
    for chain in chains:
        ids = table.ids[chain.rows]
        assert not trained.intersection(ids.tolist()) and held[chain.rows[0]]
        assert all(keys[int(b)].startswith(keys[int(a)] + ".") for a, b in zip(ids, ids[1:]))  # parent -> member
    names = {c.name for c in held_out_chains(store, table, 0.2, 8, vocabulary)}
    assert {c.name for c in chains} <= names
    monkeypatch.setattr(tasks, "RELATION_CHAINS_LIMIT", 2)  # kept: the first two by a salted hash
    kept = relation_chains(store, table, trained, held, 8, vocabulary)
    assert [c.name for c in kept] == [c.name for c in sorted(chains, key=lambda c: c.bucket("kept:"))[:2]]
    assert len(chains) > 2
