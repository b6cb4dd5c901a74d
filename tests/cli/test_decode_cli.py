"""`meqg decode` on a real run: stored texts come back exactly, others miss with their nearest concept."""

import json
import re
import shutil

import numpy as np

from meqg_mlx.train.run import TrainingRun

from ..conftest import cli, memorized_on_a_copy, meqg, tiny_config
from ..train.test_trainer import small_config


def test_decode_texts_and_vectors_through_a_runs_store(small_store, small_store_path, tmp_path):
    run = tmp_path / "run"
    TrainingRun(run, small_store_path, small_config(steps=1)).train()
    ids, vectors = small_store.all_vectors()
    stored = small_store.get(ids[:1].tolist())[0]["text"]
    result = meqg("decode", "--run", str(run), "--json", stored, "a recipe for tomato soup with basil")
    assert result.returncode == 0, result.stderr
    hit, miss = json.loads(result.stdout)
    assert hit["text"] == stored and hit["score"] > 0.999
    assert miss["text"] is None and miss["score"] < 0.9 and miss["nearest_text"]
    np.save(tmp_path / "v.npy", vectors[:3])
    result = meqg("decode", "--run", str(run), "--vectors", str(tmp_path / "v.npy"), "--json")
    texts = [r["text"] for r in json.loads(result.stdout)]
    assert texts == [small_store.get([i])[0]["text"] for i in ids[:3].tolist()]
    np.save(tmp_path / "bad.npy", np.ones((2, 5)))
    bad = cli("decode", "--run", str(run), "--vectors", str(tmp_path / "bad.npy"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "dimension 5" in bad.stderr
    missing = cli("decode", "--run", str(tmp_path / "nope"), "x")
    assert missing.returncode == 2 and "run.json missing" in missing.stderr


def test_inverter_train_refuses_resumes_and_its_poor_texts_never_reach_the_store(sentence_store_path, tmp_path):
    from meqg_mlx.concepts.store import ConceptStore
    from meqg_mlx.config import save_config

    store = tmp_path / "store"
    shutil.copytree(sentence_store_path, store)
    save_config(tiny_config(steps=3, eval_every=2, seed_with_nearest=False), tmp_path / "tiny.yaml")
    run = tmp_path / "run"
    train = ("inverter", "train", "--store", str(store), "--run", str(run))
    trained = meqg(*train, "--config", str(tmp_path / "tiny.yaml"))
    assert trained.returncode == 0, trained.stderr
    assert "finished at step 3" in trained.stdout and "11 texts trained, 1 held out" in trained.stdout
    again = cli(*train, "--config", str(tmp_path / "tiny.yaml"))
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "--resume" in again.stderr
    resumed = meqg("inverter", "train", "--run", str(run), "--resume", "--steps", "4")
    assert resumed.returncode == 0 and "finished at step 4" in resumed.stdout, resumed.stderr

    # the case: a barely trained inverter decodes a sentence the store lacks into noise
    texts = ("Sort a list in place.", "Bananas are yellow fruit.")
    result = meqg("decode", "--run", str(run), "--steps", "1", "--json", "--write-back", *texts)
    assert result.returncode == 0, result.stderr
    hit, miss = json.loads(result.stdout)
    assert hit["source"] == "store" and hit["text"] == "Sort a list in place." and hit["cosine"] == hit["score"]
    assert miss["correction_steps"] == 1 and miss["written_id"] is None
    assert miss["source"] == "nearest" or "below the write-back floor 0.99" in miss["not_written"]
    assert ConceptStore.open(store).count() == 12  # nothing written: the next decode cannot find noise at 1.000


def test_write_back_stores_a_text_the_store_lacks_under_its_own_embedding(memorized, sentence_store_path, tmp_path):
    from meqg_mlx.concepts.store import ConceptStore

    run, store = memorized_on_a_copy(memorized, sentence_store_path, tmp_path)
    # a sentence the inverter learned leaves the store: only the inverter can write it now
    gone = ConceptStore.open(store).get([3])
    assert meqg("store", "remove", "--store", str(store), "3").returncode == 0
    decode = ("decode", "--run", str(run), "--steps", "1")
    shown = meqg(*decode, "--write-back", gone[0]["text"])
    assert re.search(r"inverter cos (0\.99\d|1\.000) .* written as #12", shown.stdout), shown.stdout
    row = ConceptStore.open(store).get([12])[0]
    assert row["source"] == "inversion" and re.fullmatch(r"inversion cos=(0\.99\d\d|1\.0000)", row["key"])
    assert squashed(row["text"]) == squashed(gone[0]["text"])
    again = json.loads(meqg(*decode, "--json", gone[0]["text"]).stdout)[0]
    assert again["source"] == "store" and again["concept_id"] == 12  # found under its own embedding
    removed = meqg("store", "remove", "--store", str(store), "--source", "inversion")
    assert removed.returncode == 0 and ConceptStore.open(store).count() == 11, removed.stderr


def squashed(text: str) -> str:
    return "".join(text.lower().split())


def test_inverter_train_errors_are_one_line(small_store_path, tmp_path):
    (tmp_path / "bad.yaml").write_text("inversion:\n  stepz: 3\n")
    for args, message in (
        (["--store", str(tmp_path / "none")], "no concept store"),
        (["--store", str(small_store_path), "--config", str(tmp_path / "bad.yaml")], "stepz"),
        (["--store", str(small_store_path), "--steps", "0"], "'inversion.steps' must be in [1,"),
        (["--resume"], "no inverter to resume"),
        (["--resume", "--force"], "drop --force/--config"),
    ):
        bad = cli("inverter", "train", "--run", str(tmp_path / "run"), *args)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and message in bad.stderr, bad.stderr


def test_decode_errors_are_one_line(memorized, tmp_path):
    run = memorized[0]
    np.save(tmp_path / "empty.npy", np.zeros((0, 384), np.float32))
    for args, message in (
        (["--vectors", str(tmp_path / "empty.npy")], "holds no vectors"),
        (["--steps", "-1", "A text."], "correction steps must be >= 0"),
        (["--write-back", "--write-back-min", "2", "A recipe for soup."], "write-back floor is a cosine"),
    ):
        bad = cli("decode", "--run", str(run), "--threshold", "0.999", *args)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and message in bad.stderr, bad.stderr
