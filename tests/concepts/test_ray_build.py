"""`meqg data build --engine ray`: a real local Ray cluster, real workers, one of them killed."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np

from meqg_mlx.concepts import ConceptStore

from ..conftest import meqg
from ..processes import child, wait_until
from .test_s3 import paragraphs, write_source

SOURCES = ["stdlib:json,heapq"]


def ray_writers() -> list[int]:
    """Pids of live ingest actors (Ray titles them ray::_Writer...)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::_Writer"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def stored(path: Path) -> dict[int, tuple]:
    store = ConceptStore.open(path)
    table = store.columns(["concept_id", "text", "key", "kind", "source", "relations"])
    rows = table.to_pylist()
    return {r["concept_id"]: (r["text"], r["key"], r["kind"], r["source"], str(r["relations"])) for r in rows}


def test_a_ray_build_stores_what_the_in_process_build_does_even_when_a_worker_is_killed(tmp_path):
    source = write_source(tmp_path / "paragraphs.jsonl", paragraphs(240))
    config = tmp_path / "config.yaml"
    config.write_text("store:\n  commit_rows: 16\n")
    common = ["--source", SOURCES[0], "--source", str(source), "--config", str(config)]
    exe = Path(sys.executable).with_name("meqg")

    killed = []
    args = [str(exe), "data", "build", "--store", str(tmp_path / "ray"), *common, "--engine", "ray", "--workers", "2"]
    with child(args, stdout=open(tmp_path / "ray.log", "w"), stderr=open(tmp_path / "ray.err", "w")) as build:

        def kill_a_writer_mid_ingest():
            if not (tmp_path / "ray" / "meqg_store.json").exists():
                return False
            if ConceptStore.open(tmp_path / "ray").count() < 2 * 16 or not ray_writers():
                return False
            os.kill(ray_writers()[0], signal.SIGKILL)
            killed.append(True)
            return True

        wait_until(kill_a_writer_mid_ingest, 300, "two batches committed by Ray workers", process=build)
        build.wait(600)
    log = (tmp_path / "ray.log").read_text() + (tmp_path / "ray.err").read_text()
    assert killed and build.returncode == 0, log
    wait_until(lambda: not ray_writers(), 60, "the local cluster's workers ending with the build")

    in_process = meqg("data", "build", "--store", str(tmp_path / "here"), *common, timeout=600)
    assert in_process.returncode == 0, in_process.stderr
    on_ray, here = stored(tmp_path / "ray"), stored(tmp_path / "here")
    assert on_ray == here and len(here) > 240  # same ids, texts, keys and relations, nothing twice
    ray_ids, ray_vectors = ConceptStore.open(tmp_path / "ray").all_vectors()
    ids, vectors = ConceptStore.open(tmp_path / "here").all_vectors()
    np.testing.assert_allclose(ray_vectors[np.argsort(ray_ids)], vectors[np.argsort(ids)], atol=1e-5)


def test_ray_options_without_the_ray_engine_are_refused(tmp_path):
    result = meqg("data", "build", "--store", str(tmp_path / "s"), "--source", "pydoc", "--workers", "2")
    assert result.returncode != 0 and "--address and --workers need --engine ray" in result.stderr
    assert not (tmp_path / "s").exists()


def test_a_ray_client_address_without_ray_client_is_one_line(tmp_path):
    """`ray://` needs Ray Client (grpcio), which meqg's `ray` extra does not install: refused before a store exists."""
    import importlib.util

    import pytest

    if importlib.util.find_spec("grpc") is not None:
        pytest.skip("Ray Client is installed here: the address would be tried")
    result = meqg(
        "data", "build", "--store", str(tmp_path / "s"), "--source", "pydoc", "--engine", "ray",
        "--address", "ray://127.0.0.1:1",
    )  # fmt: skip
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "needs Ray Client" in result.stderr and "pip install 'ray[client]'" in result.stderr
    assert not (tmp_path / "s").exists()
