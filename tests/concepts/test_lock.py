"""Two writers, one store: real `meqg data build` processes at once, and the lock between them."""

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pydoc_data.topics
import pytest

from meqg_mlx.concepts.location import StoreDir
from meqg_mlx.concepts.lock import LOCK_FILE, write_lock
from meqg_mlx.concepts.store import ConceptStore
from meqg_mlx.concepts.text import normalize_text

from ..processes import child, run, wait_until


def paragraphs(count: int) -> list[str]:
    """Distinct real paragraphs of Python's own documentation."""
    seen, found = set(), []
    for topic in sorted(pydoc_data.topics.topics):
        for paragraph in pydoc_data.topics.topics[topic].split("\n\n"):
            text = " ".join(paragraph.split())
            if 40 <= len(text) <= 400 and normalize_text(text) not in seen:
                seen.add(normalize_text(text))
                found.append(text)
                if len(found) == count:
                    return found
    raise AssertionError("pydoc topics ran out of paragraphs")


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def build_command(store: Path, source: Path) -> list[str]:
    return [sys.executable, "-m", "meqg_cli.main", "data", "build", "--store", str(store), "--source", str(source)]


def test_builds_at_once_give_unique_ids_no_repeated_text_and_lose_nothing(tmp_path):
    texts = paragraphs(360)
    first = write_jsonl(tmp_path / "first.jsonl", texts[:240])
    second = write_jsonl(tmp_path / "second.jsonl", texts[120:])  # 120 texts in both
    store_path = tmp_path / "store"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    commands = [build_command(store_path, first), build_command(store_path, second), build_command(store_path, first)]
    logs = [open(tmp_path / f"build{i}.log", "w+") for i in range(3)]
    with (
        child(commands[0], stdout=logs[0], stderr=subprocess.STDOUT, env=env) as a,
        child(commands[1], stdout=logs[1], stderr=subprocess.STDOUT, env=env) as b,
        child(commands[2], stdout=logs[2], stderr=subprocess.STDOUT, env=env) as c,
    ):
        for process in (a, b, c):
            process.wait(timeout=600)
    outputs = [log.seek(0) or log.read() for log in logs]
    assert [p.returncode for p in (a, b, c)] == [0, 0, 0], outputs

    store = ConceptStore.open(store_path)
    table = store.columns(["concept_id", "text"])
    ids, stored = table["concept_id"].to_pylist(), table["text"].to_pylist()
    assert len(ids) == len(set(ids)) == len(texts)  # every id once, nothing lost
    assert sorted(map(normalize_text, stored)) == sorted(map(normalize_text, texts))  # every text once
    assert int(store.meta["next_id"]) > max(ids)
    for concept_id, vector in zip(*store.all_vectors()):  # each text's own vector finds that text
        hit = store.search_vector(vector, 1)[0]
        assert hit.concept_id == concept_id and hit.score > 0.999


def test_a_second_process_waits_for_the_lock_and_is_told_who_holds_it(tmp_path):
    holder_code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from meqg_mlx.concepts.location import StoreDir
        from meqg_mlx.concepts.lock import write_lock
        with write_lock(StoreDir(Path({str(tmp_path)!r}))):
            print("held", flush=True)
            sys.stdin.readline()
        """
    )
    with child([sys.executable, "-c", holder_code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout.readline().strip() == "held"
        heard, acquired = [], threading.Event()

        def take():
            with write_lock(StoreDir(tmp_path), on_wait=heard.append):
                acquired.set()

        waiter = threading.Thread(target=take)
        waiter.start()
        wait_until(lambda: heard, 30, "the waiting writer hearing who holds the lock")
        assert f"held by pid {holder.pid}" in heard[0] and not acquired.is_set()
        holder.stdin.write("\n")
        holder.stdin.flush()
        waiter.join(timeout=30)
        assert acquired.is_set()


def test_the_lock_is_reentrant_in_one_thread_and_says_when_it_was_taken(tmp_path):
    with write_lock(StoreDir(tmp_path)) as outer:
        with write_lock(StoreDir(tmp_path)) as inner:
            assert outer and not inner
    assert (tmp_path / LOCK_FILE).exists()


def test_a_failed_build_leaves_no_empty_store(tmp_path):
    store_path, bad = tmp_path / "store", tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a fine first row"}\nnot json\n')
    done = run(build_command(store_path, bad), timeout=300, env={**os.environ})
    assert done.returncode == 2 and done.stderr.strip().endswith(f"error: {bad}:2: invalid JSON (Expecting value)")
    assert not store_path.exists()


def test_a_store_with_rows_survives_a_failed_build(tmp_path, embedder):
    from meqg_mlx.concepts import build_store
    from meqg_mlx.errors import InputError

    store_path = tmp_path / "store"
    build_store(store_path, [str(write_jsonl(tmp_path / "a.jsonl", paragraphs(5)))], embedder)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    with pytest.raises(InputError, match="invalid JSON"):
        build_store(store_path, [str(bad)], embedder)
    store = ConceptStore.open(store_path)
    assert store.count() == 5 and np.all(np.isfinite(store.all_vectors()[1]))
