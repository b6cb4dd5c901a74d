"""`meqg decode` on a real run: stored texts come back exactly, others miss with their nearest concept."""

import json
import shutil

import numpy as np

from meqg_mlx.train.run import TrainingRun

from ..conftest import meqg
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
    bad = meqg("decode", "--run", str(run), "--vectors", str(tmp_path / "bad.npy"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "dimension 5" in bad.stderr
    missing = meqg("decode", "--run", str(tmp_path / "nope"), "x")
    assert missing.returncode == 2 and "run.json missing" in missing.stderr


def test_inverter_train_then_decode_inverts_misses_and_writes_them_back(sentence_store_path, tmp_path):
    from meqg_mlx.concepts.store import ConceptStore
    from meqg_mlx.config import save_config

    from ..inversion.conftest import tiny_config

    store = tmp_path / "store"
    shutil.copytree(sentence_store_path, store)
    # barely trained, so its texts are new; not seeded with the nearest store text, so they are the inverter's
    save_config(tiny_config(steps=3, eval_every=2, seed_with_nearest=False), tmp_path / "tiny.yaml")
    run = tmp_path / "run"
    trained = meqg(
        "inverter", "train", "--store", str(store), "--run", str(run), "--config", str(tmp_path / "tiny.yaml")
    )
    assert trained.returncode == 0, trained.stderr
    assert "finished at step 3" in trained.stdout and "11 texts trained, 1 held out" in trained.stdout
    result = meqg(
        "decode",
        "--run",
        str(run),
        "--json",
        "--steps",
        "1",
        "--write-back",
        "Sort a list in place.",
        "A recipe for tomato soup with basil.",
    )
    assert result.returncode == 0, result.stderr
    hit, miss = json.loads(result.stdout)
    assert hit["source"] == "store" and hit["text"] == "Sort a list in place."
    assert miss["source"] == "inversion" and miss["text"] and miss["correction_steps"] == 1
    assert -1 <= miss["inversion_cosine"] <= 1 and miss["written_id"] == 12
    written = ConceptStore.open(store).get([12])[0]
    assert written["source"] == "inversion" and written["text"] == miss["text"]
    shown = meqg("decode", "--run", str(run), "--steps", "0", "A recipe for tomato soup with basil.")
    assert "store cos" in shown.stdout or "inverter cos" in shown.stdout
    assert ConceptStore.open(store).count() == 13  # without --write-back nothing more is stored


def test_inverter_train_errors_are_one_line(small_store_path, tmp_path):
    (tmp_path / "bad.yaml").write_text("inversion:\n  stepz: 3\n")
    for args, message in (
        (["--store", str(tmp_path / "none")], "no concept store"),
        (["--store", str(small_store_path), "--config", str(tmp_path / "bad.yaml")], "stepz"),
    ):
        bad = meqg("inverter", "train", "--run", str(tmp_path / "run"), *args)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and message in bad.stderr, bad.stderr
