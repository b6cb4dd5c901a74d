"""The `meqg` console script, run as a user runs it."""

import json
import re
import shutil

import pytest


from ..conftest import cli, meqg


def test_help_lists_the_commands():
    result = meqg("--help")
    assert result.returncode == 0
    for command in ("doctor", "data", "store", "encode", "demo", "train", "monitor"):
        assert command in result.stdout


def test_doctor_brief():
    result = meqg("doctor", "--brief")
    assert result.returncode == 0 and "GFLOP/s" in result.stdout and "BLAS" in result.stdout


def test_store_stats_search_show(small_store_path):
    stats = meqg("store", "stats", "--store", str(small_store_path), "--json")
    assert stats.returncode == 0, stats.stderr
    info = json.loads(stats.stdout)
    assert info["concepts"] > 300 and sum(info["relation_types"].values()) == info["relations"]
    assert {"contains", "defined_in", "next"} <= set(info["relation_types"])
    plain = meqg("store", "stats", "--store", str(small_store_path))
    assert f"contains {info['relation_types']['contains']}" in plain.stdout
    found = meqg(
        "store", "search", "insert an item into a sorted list", "--store", str(small_store_path), "-k", "5", "--json"
    )
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert len(hits) == 5 and any(h["key"].startswith("py:bisect.insort") for h in hits)
    shown = meqg("store", "show", str(hits[0]["concept_id"]), "--store", str(small_store_path))
    assert shown.returncode == 0 and hits[0]["text"].splitlines()[0] in shown.stdout


def test_encode_prints_unit_vectors_from_either_backend():
    mlx = json.loads(meqg("encode", "hello world", "sort a list").stdout)
    torch = json.loads(meqg("encode", "--backend", "torch", "hello world", "sort a list").stdout)
    assert mlx["dim"] == torch["dim"] == 384 and len(mlx["vectors"]) == 2 and mlx["normalized"]
    assert mlx["model"] == torch["model"] == "all-MiniLM-L6-v2"
    assert abs(sum(x * x for x in mlx["vectors"][0]) - 1) < 1e-4
    assert sum(a * b for a, b in zip(mlx["vectors"][1], torch["vectors"][1])) > 0.99999


def one_line_error(result, text):
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and text in lines[0], result.stderr


def test_bad_input_is_a_one_line_error(tmp_path, small_store_path):
    one_line_error(cli("store", "stats", "--store", str(tmp_path / "missing")), "no concept store at")
    one_line_error(cli("store", "show", "99999999", "--store", str(small_store_path)), "no concept with id")
    one_line_error(cli("encode", ""), "text #0 is empty")
    one_line_error(cli("encode", "--backend", "jax", "hi"), "unknown encoder backend 'jax'")
    one_line_error(cli("encode", "--model", str(tmp_path / "nope"), "hi"), "encoder model directory not found")
    one_line_error(cli("encode", "--model", str(tmp_path), "hi"), "not a sentence-transformers model directory")
    one_line_error(cli("encode", "--backend", "torch", "--dtype", "float16", "hi"), "need --backend mlx")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(small_store_path, corrupt)
    (corrupt / "meqg_store.json").write_text("garbage")
    one_line_error(cli("store", "stats", "--store", str(corrupt)), "corrupt store metadata")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    one_line_error(cli("data", "build", "--store", str(tmp_path / "new"), "--source", str(empty)), "is empty")
    one_line_error(
        cli("data", "build", "--store", str(tmp_path / "new"), "--source", str(tmp_path / "corrupt")),
        "nothing usable under",
    )
    assert not (tmp_path / "new").exists()
    config = tmp_path / "c.yaml"
    config.write_text("store:\n  comit_rows: 3\n")
    one_line_error(
        cli("data", "build", "--store", str(tmp_path / "new"), "--source", "pydoc", "--config", str(config)),
        "unknown config key 'store.comit_rows'",
    )


def test_search_by_vector_file_and_bad_vectors(tmp_path, small_store_path):
    encoded = cli("encode", "insert an item into a sorted list")
    (tmp_path / "v.json").write_text(encoded.stdout)
    found = cli("store", "search", "--vector", str(tmp_path / "v.json"), "--store", str(small_store_path), "--json")
    assert found.returncode == 0, found.stderr
    assert any(h["key"].startswith("py:bisect.insort") for h in json.loads(found.stdout))
    for content, message in [
        ("[1.0, 2.0, 3.0]", "dimension 3, the store expects 384"),
        (json.dumps([float("nan")] + [0.1] * 383).replace("NaN", "NaN"), "contains NaN or Inf"),
        ("{not json", "is not valid JSON"),
        ('["a", "b"]', "not a numeric array"),
    ]:
        (tmp_path / "bad.json").write_text(content)
        one_line_error(
            cli("store", "search", "--vector", str(tmp_path / "bad.json"), "--store", str(small_store_path)), message
        )
    one_line_error(cli("store", "search", "--store", str(small_store_path)), "give either a query TEXT")


def test_data_build_from_user_files(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.md").write_text("# Release plans for the team\n\nWe ship on Friday. Testing happens on Thursday.\n")
    result = meqg("data", "build", "--store", str(tmp_path / "s"), "--source", str(docs))
    assert result.returncode == 0, result.stderr
    assert "+3 concepts" in result.stdout
    again = meqg("data", "build", "--store", str(tmp_path / "s"), "--source", str(docs))
    assert "+0 concepts" in again.stdout
    # a folder's bad record does not abort the build: it is skipped, counted and located
    (docs / "rows.jsonl").write_text('{"text": "Deploys need a green build."}\n{"text": ""}\n')
    (docs / "budget.csv").write_text("a,b\n")
    mixed = meqg("data", "build", "--store", str(tmp_path / "s"), "--source", str(docs))
    assert mixed.returncode == 0, mixed.stderr
    assert "+1 concepts" in mixed.stdout and "skipped 2 unusable records or files:" in mixed.stdout
    assert f"{docs / 'rows.jsonl'}:2: empty text" in mixed.stdout
    assert f"unsupported file type .csv: {docs / 'budget.csv'}" in mixed.stdout


def test_demo_on_an_existing_store(small_store_path, tmp_path, embedder):
    result = meqg("demo", "--store", str(small_store_path), "--run", str(tmp_path / "run"), "--steps", "3")
    assert result.returncode == 0, result.stderr
    assert "finished at step 3" in result.stdout and "knn_successor@8" in result.stdout
    # the model it trains is the shipped config's, which users can train themselves
    assert "training a small VMM (demo.yaml)" in result.stdout
    assert "d_model: 64" in (tmp_path / "run" / "config.yaml").read_text()
    assert "a held-out chain rolled out (next -> next) from" in result.stdout  # no WordNet in the small store
    assert result.stdout.count("      next -> ") == 2  # each step decoded
    assert "concepts," in result.stdout and "'parse JSON from a string'" in result.stdout
    assert "json.loads" in result.stdout or "json.decoder" in result.stdout
    assert "next:" in result.stdout
    assert f"meqg app --store {small_store_path} --runs {tmp_path}" in " ".join(result.stdout.split())
    assert "one Diamond episode" in result.stdout and "stopped by" in result.stdout and "episode:" in result.stdout
    assert "decode round trip" in result.stdout and "Sort a list in place. ->" in result.stdout
    round_trips = [line for line in result.stdout.split("decode round trip")[1].splitlines() if " cos " in line]
    assert len(round_trips) == 2
    for line in round_trips:  # the cosine printed is the shown text's own
        source, printed, shown = re.fullmatch(r"(.*?) -> .*? cos (-?\d\.\d{3}) #\d+: (.*)", line).groups()
        own = float(embedder.encode([shown])[0] @ embedder.encode([source])[0])
        assert float(printed) == pytest.approx(own, abs=6e-4), line
