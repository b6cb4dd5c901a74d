import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from meqg_mlx.concepts import ConceptStore, build_store
from meqg_mlx.errors import InputError

from ..conftest import SMALL_SOURCES
from ..processes import child, wait_until


def test_small_store_is_real_and_complete(small_store):
    stats = small_store.stats()
    assert stats["concepts"] > 300
    assert stats["kinds"]["code"] > 200 and stats["kinds"]["text"] > 50
    assert stats["relations"] > stats["concepts"]
    assert stats["validation"].get("passed", 0) > 20
    assert stats["origin_model"] == "all-MiniLM-L6-v2" and stats["dim"] == 384
    assert stats["fragments"] == 1  # compacted after ingest
    domains = small_store.domains()
    assert len(domains) == 16 and sum(d["count"] for d in domains) == stats["concepts"]
    assert all(-1 < d["domain"] < 16 for d in small_store.get(list(range(0, 300, 7))))


def test_search_finds_the_right_function(small_store, embedder):
    hits = small_store.search_vector(embedder.encode(["merge several sorted inputs into one sorted output"])[0], 5)
    assert any(h.key == "py:heapq.merge" for h in hits)
    hits = small_store.search_vector(embedder.encode(["serialize an object to a JSON string"])[0], 5)
    assert any(h.key in ("py:json.dumps", "py:json.encoder.JSONEncoder.encode") for h in hits)


def test_vectors_are_the_encoders_vectors(small_store, embedder):
    row = small_store.get([0])[0]
    stored = small_store.vectors([0])[0]
    assert float(stored @ embedder.encode([row["text"]])[0]) > 0.9999


def test_rebuilding_appends_only_new_concepts(tmp_path, embedder, small_store):
    path = tmp_path / "s"
    first = build_store(path, ["stdlib:bisect"], embedder)
    again = build_store(path, ["stdlib:bisect"], embedder)
    assert first.added > 10 and again.added == 0 and again.duplicates >= first.added
    more = build_store(path, ["stdlib:bisect,heapq"], embedder)
    store = ConceptStore.open(path)
    assert more.added > 0 and store.count() == first.added + more.added
    ids = store.columns(["concept_id"])["concept_id"].to_pylist()
    assert len(set(ids)) == len(ids)
    # new rows were assigned to the existing domains on write
    assert min(store.columns(["domain"])["domain"].to_pylist()) >= 0


def test_limit_counts_new_concepts(tmp_path, embedder):
    path = tmp_path / "s"
    assert build_store(path, ["stdlib:heapq"], embedder, limit=7).added == 7
    assert build_store(path, ["stdlib:heapq"], embedder, limit=7).added == 7
    assert ConceptStore.open(path).count() == 14


def test_bad_sources_leave_no_store_changes(tmp_path, embedder):
    path = tmp_path / "s"
    build_store(path, ["stdlib:bisect"], embedder)
    version = ConceptStore.open(path).table.version
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe broken")
    for sources, message in [
        (["nowhere/at/all"], "unknown source"),
        ([str(tmp_path / "bad.txt")], "UTF-8"),
        ([], "no --source"),
    ]:
        with pytest.raises(InputError, match=message):
            build_store(path, sources, embedder)
    assert ConceptStore.open(path).table.version == version
    with pytest.raises(InputError, match="--limit must be positive"):
        build_store(path, ["stdlib:bisect"], embedder, limit=0)


def test_kill_9_during_build_keeps_every_committed_batch(tmp_path, small_store, embedder):
    path = tmp_path / "crash"
    config = tmp_path / "c.yaml"
    config.write_text("store:\n  commit_rows: 32\n")
    exe = os.path.join(os.path.dirname(sys.executable), "meqg")
    cmd = [exe, "data", "build", "--store", str(path), "--config", str(config)]
    for source in SMALL_SOURCES:
        cmd += ["--source", source]

    def committed() -> int:
        return ConceptStore.open(path).count() if (path / "meqg_store.json").exists() else 0

    with child(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        count = wait_until(lambda: (n := committed()) >= 96 and n, 240, "96 committed concepts", 0.2, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    store = ConceptStore.open(path)
    survived = store.count()
    # whole batches only (the last one may be short if the kill came after it)
    assert survived >= count and (survived % 32 == 0 or survived == small_store.count())
    ids, vectors = store.all_vectors()
    assert np.isfinite(vectors).all() and len(set(ids.tolist())) == survived
    # building again completes the store: same concepts as an uninterrupted build
    build_store(path, SMALL_SOURCES, embedder)
    store = ConceptStore.open(path)
    assert store.count() == small_store.count()
    assert set(store.columns(["key"])["key"].to_pylist()) == set(small_store.columns(["key"])["key"].to_pylist())
