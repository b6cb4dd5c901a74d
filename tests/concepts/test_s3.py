"""Stores on S3: a real S3-compatible server (moto, `s3_endpoint` in conftest) on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pydoc_data.topics
import pytest

from meqg_mlx.concepts import ConceptStore, build_store
from meqg_mlx.concepts.index import PartitionedIndex
from meqg_mlx.concepts.location import Location, S3Prefix, open_location
from meqg_mlx.concepts.lock import LOCK_FILE
from meqg_mlx.config import StoreConfig
from meqg_mlx.errors import InputError, StoreError

from ..conftest import meqg
from ..processes import child, wait_until

SOURCES = ["stdlib:json,heapq"]


def paragraphs(count: int) -> list[str]:
    """Distinct real paragraphs of the Python reference (pydoc's topics)."""
    seen, texts = set(), []
    for topic in sorted(pydoc_data.topics.topics):
        for paragraph in pydoc_data.topics.topics[topic].split("\n\n"):
            text = " ".join(paragraph.split())
            if 40 <= len(text) <= 300 and text.casefold() not in seen:
                seen.add(text.casefold())
                texts.append(text)
    assert len(texts) >= count
    return texts[:count]


def write_source(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def concept_set(store: ConceptStore) -> dict[str, int]:
    table = store.columns(["concept_id", "text"])
    return dict(zip(table["text"].to_pylist(), table["concept_id"].to_pylist()))


def test_a_store_on_s3_builds_searches_appends_and_reopens_like_a_local_one(s3_store, tmp_path, embedder):
    summary = build_store(s3_store, SOURCES, embedder)
    local = tmp_path / "local"
    build_store(local, SOURCES, embedder)
    remote, here = ConceptStore.open(s3_store), ConceptStore.open(local)
    assert summary.added == remote.count() == here.count() > 100
    assert concept_set(remote) == concept_set(here)
    ids, vectors = remote.all_vectors()
    local_ids, local_vectors = here.all_vectors()
    np.testing.assert_allclose(vectors[np.argsort(ids)], local_vectors[np.argsort(local_ids)], atol=1e-6)
    hits = remote.search_vector(embedder.encode(["Serialize an object to a JSON formatted string."])[0], k=5)
    assert any("json" in hit.text.lower() for hit in hits)
    assert sorted(open_location(s3_store).names()) == ["lance", "meqg_store.json"]  # the lock is gone

    before = remote.count()
    again = build_store(s3_store, [*SOURCES, "stdlib:bisect"], embedder)
    reopened = ConceptStore.open(s3_store)
    assert again.added > 0 and reopened.count() == before + again.added and again.duplicates >= before
    texts = concept_set(reopened)
    assert len(set(texts.values())) == len(texts) == reopened.count()  # ids unique, nothing stored twice

    # the partitioned index is published beside the tables by a pointer; a second build replaces it whole
    assert reopened.build_index(force=True)
    first_token = json.loads(reopened.location.read_bytes("index/CURRENT"))["token"]
    assert reopened.build_index(force=True)
    tokens = reopened.location.call("list_objects_v2", Prefix=reopened.location.key("index/"), Delimiter="/")
    assert [p["Prefix"].rstrip("/").rsplit("/", 1)[-1] for p in tokens["CommonPrefixes"]] != [first_token]
    assert len(tokens["CommonPrefixes"]) == 1
    index = PartitionedIndex.load(ConceptStore.open(s3_store).location)
    assert index is not None and index.rows == reopened.count()
    query = vectors[7]
    assert ConceptStore.open(s3_store).nearest(query, 1)[0][0] == ids[7]

    # the disk-resident index lives in the table on S3; the in-memory one's objects go
    assert reopened.build_index(force=True, kind="disk")
    on_disk = ConceptStore.open(s3_store)
    assert "disk-resident LanceDB IVF_RQ" in on_disk.index_kind() and "index" not in on_disk.location.names()
    assert on_disk.nearest(query, 1)[0][0] == ids[7]


def test_a_reader_sees_whole_batches_while_a_writer_appends_and_a_killed_writer_loses_only_its_batch(
    s3_store, tmp_path
):
    texts = paragraphs(480)
    source = write_source(tmp_path / "paragraphs.jsonl", texts)
    config = tmp_path / "config.yaml"
    config.write_text("store:\n  commit_rows: 16\n  lock_lease_s: 2\n")
    build = ["data", "build", "--store", s3_store, "--source", str(source), "--config", str(config)]
    exe = Path(sys.executable).with_name("meqg")

    seen = []
    with child([str(exe), *build]) as writer:

        def count_mid_ingest():
            if not ConceptStore.exists(s3_store):
                return False
            store = ConceptStore.open(s3_store)
            seen.append(store.count())
            if seen[-1]:  # every version a reader opens holds whole batches and answers searches
                assert len(store.nearest(store.all_vectors()[1][0], 3)[0]) == 3
            return seen[-1] >= 3 * 16

        wait_until(count_mid_ingest, 240, "three batches committed", interval=0.2, process=writer)
        writer.send_signal(signal.SIGKILL)
        writer.wait(30)
    assert seen == sorted(seen) and all(n % 16 == 0 for n in seen)
    killed = ConceptStore.open(s3_store)
    kept = concept_set(killed)
    assert killed.count() % 16 == 0 and 3 * 16 <= killed.count() < len(texts)
    assert ".lock" in open_location(s3_store).names()  # the dead writer's lease is still there

    result = meqg(*build, timeout=600)  # waits out the dead writer's lease, then fills the gap
    assert result.returncode == 0, result.stderr
    assert "took over the write lock" in " ".join(result.stdout.split())
    final = ConceptStore.open(s3_store)
    stored = concept_set(final)
    assert final.count() == len(texts) == len(stored) and set(stored) == set(texts)
    assert all(stored[t] == i for t, i in kept.items())  # what survived the kill kept its ids
    assert len(set(stored.values())) == len(texts)


def test_a_live_writers_lease_is_renewed_and_not_taken_over(s3_store):
    ConceptStore.create(s3_store, 8, "test-model")
    holder_code = textwrap.dedent(
        f"""
        import sys
        from meqg_mlx.concepts import ConceptStore
        from meqg_mlx.config import StoreConfig
        with ConceptStore.open({s3_store!r}, StoreConfig(lock_lease_s=2.0)).writing():
            print("held", flush=True)
            sys.stdin.readline()
        """
    )
    with child([sys.executable, "-c", holder_code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout.readline().strip() == "held"
        store = ConceptStore.open(s3_store, StoreConfig(lock_lease_s=2.0))
        heard, taken = [], threading.Event()

        def take():
            with store.writing(on_wait=heard.append):
                taken.set()

        waiter = threading.Thread(target=take, daemon=True)
        waiter.start()
        wait_until(lambda: heard, 30, "the waiting writer hearing who holds the lock")
        assert f"pid {holder.pid}" in heard[0]
        location = open_location(s3_store)
        renewed = lambda: location.call("head_object", Key=location.key(LOCK_FILE))["LastModified"]  # noqa: E731
        first = renewed()
        # two leases of renewals seen by the server's clock, while the waiter kept trying: a stale lease
        # (unrenewed for a lease + 1 s) would have been taken over by now
        seen = lambda: taken.is_set() or (renewed() - first).total_seconds() >= 4.0  # noqa: E731
        wait_until(seen, 60, "the holder renewing its lease")
        assert not taken.is_set() and holder.poll() is None
        holder.stdin.write("\n")
        holder.stdin.flush()
        waiter.join(30)
        assert taken.is_set()


def test_unsupported_schemes_and_missing_buckets_are_one_line_errors(s3_store):
    with pytest.raises(InputError, match="scheme 'gs' is not supported"):
        ConceptStore.open("gs://bucket/store")
    with pytest.raises(StoreError, match="no bucket 'no-such-bucket-meqg'"):
        ConceptStore.open("s3://no-such-bucket-meqg/store")
    result = meqg("store", "stats", "--store", s3_store)
    assert result.returncode != 0 and result.stderr.strip().count("\n") == 0
    assert f"no concept store at {s3_store}" in result.stderr
    assert isinstance(open_location(s3_store), S3Prefix)


def test_storage_options_come_from_the_environment_overlaid_by_the_config(monkeypatch):
    from meqg_mlx.concepts.location import resolve_storage_options
    from meqg_mlx.paths import store_uri

    for name in ("AWS_ENDPOINT", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN", "AWS_ALLOW_HTTP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    options = resolve_storage_options({"Region": "us-east-2", "timeout": "60s"})
    assert options == {
        "aws_endpoint": "http://127.0.0.1:9000",
        "aws_region": "us-east-2",
        "aws_access_key_id": "from-env",
        "aws_secret_access_key": "secret",
        "timeout": "60s",
        "allow_http": "true",  # a plain-HTTP endpoint was asked for
    }
    assert store_uri("s3://bucket/path/") == "s3://bucket/path"
    assert store_uri("file:///tmp/x/../y") == "/tmp/y"


def test_a_local_directory_and_an_s3_prefix_are_both_locations(s3_store, tmp_path):
    """`location.Location` is what a store needs of its place; the check itself refuses a partial one."""
    assert isinstance(open_location(tmp_path / "here"), Location) and isinstance(open_location(s3_store), Location)

    class OnlyReads:
        uri, remote = "mem://x", False

        def read_bytes(self, name):
            return None

    assert not isinstance(OnlyReads(), Location)
