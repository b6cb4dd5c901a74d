"""`meqg decode` on a real run: stored texts come back exactly, others miss with their nearest concept."""

import json

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
