"""Shared fixtures: the real bundled encoder (MLX, and the PyTorch reference) and small real stores."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# tests never write into the user's meqg home (default stores, runs, the baseline cache); the one they
# write into goes with the session (child processes inherit it and make none of their own)
if "MEQG_HOME" not in os.environ:
    os.environ["MEQG_HOME"] = tempfile.mkdtemp(prefix="meqg-home-")
    atexit.register(shutil.rmtree, os.environ["MEQG_HOME"], ignore_errors=True)

import meqg_mlx  # noqa: E402,F401  (sets up BLAS for when mlx is first imported)

from .skips import pytest_collection_modifyitems, pytest_sessionfinish, pytest_terminal_summary  # noqa: E402,F401

SMALL_SOURCES = ["stdlib:json,heapq,bisect,textwrap,string,functools,fractions,statistics,shlex,difflib"]


@pytest.fixture(scope="session")
def embedder():
    from meqg_mlx.encoder import load_embedder

    return load_embedder(backend="mlx")  # meqg's own port, whatever `auto` picks on this machine


@pytest.fixture(scope="session")
def reference_embedder():
    """sentence-transformers (PyTorch): what the MLX encoder is checked against."""
    from meqg_mlx.encoder import load_embedder

    return load_embedder(backend="torch")


@pytest.fixture(scope="session")
def small_store_path(tmp_path_factory, embedder) -> Path:
    """A few hundred real stdlib concepts, built through the real pipeline."""
    from meqg_mlx.concepts import build_store

    path = tmp_path_factory.mktemp("stores") / "small"
    build_store(path, SMALL_SOURCES, embedder)
    return path


@pytest.fixture(scope="session")
def small_store(small_store_path):
    from meqg_mlx.concepts import ConceptStore

    return ConceptStore.open(small_store_path)


SENTENCES = [  # a tiny store an inverter can learn by heart in seconds
    "Read a file line by line.",
    "Sort a list in place.",
    "Open a socket to a remote host.",
    "Parse a JSON document into a dictionary.",
    "Compress data with zlib.",
    "Join two paths together.",
    "Format a date as ISO 8601.",
    "Count the words in a string.",
    "Spawn a child process and wait for it.",
    "Hash a password with a random salt.",
    "Merge two sorted iterables lazily.",
    "Round a number to two decimals.",
]


@pytest.fixture(scope="session")
def sentence_store_path(tmp_path_factory, embedder) -> Path:
    from meqg_mlx.concepts.store import ConceptStore, NewConcept

    path = tmp_path_factory.mktemp("stores") / "sentences"
    store = ConceptStore.create(path, embedder.dim, embedder.name)
    first = store.reserve_ids(len(SENTENCES))
    store.add(
        [
            NewConcept(first + i, text, vector, source="test")
            for i, (text, vector) in enumerate(zip(SENTENCES, embedder.encode(SENTENCES)))
        ]
    )
    return path


GRAPH_DIM, GRAPH_ROOTS, GRAPH_CHILDREN = 32, 24, 16


def graph_concepts(seed: int = 0) -> list:
    """A toy lexicon with known answers: GRAPH_ROOTS categories, each with GRAPH_CHILDREN members near it
    (member = normalize(category + 0.6 noise)); `hypernym` member -> category and `hyponym` back; `antonym`
    between member pairs, both ways. Keys as WordNet's, so each concept is its own held-out unit."""
    from meqg_mlx.concepts.store import NewConcept

    rng = np.random.default_rng(seed)

    def unit(v):
        return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)

    roots = unit(rng.normal(size=(GRAPH_ROOTS, GRAPH_DIM)))
    concepts = []
    for r, root in enumerate(roots):
        children = unit(root + 0.6 * unit(rng.normal(size=(GRAPH_CHILDREN, GRAPH_DIM))))
        root_id = len(concepts)
        child_ids = [root_id + 1 + c for c in range(GRAPH_CHILDREN)]
        concepts.append(
            NewConcept(root_id, f"category {r}", root, "lexical", f"wn:n:{root_id:08d}", "graph",
                       relations=[(c, "hyponym", 1.0) for c in child_ids])
        )  # fmt: skip
        for c, (child_id, vector) in enumerate(zip(child_ids, children)):
            partner = child_ids[c ^ 1]
            relations = [(root_id, "hypernym", 1.0), (partner, "antonym", 1.0)]
            concepts.append(NewConcept(child_id, f"member {c} of {r}", vector, "lexical", f"wn:n:{child_id:08d}",
                                       "graph", relations=relations))  # fmt: skip
    return concepts


@pytest.fixture(scope="session")
def graph_store(tmp_path_factory):
    from meqg_mlx.concepts.store import ConceptStore

    store = ConceptStore.create(tmp_path_factory.mktemp("stores") / "graph", GRAPH_DIM, "graph-test")
    concepts = graph_concepts()
    store.reserve_ids(len(concepts))
    store.add(concepts)
    return store


def meqg(*args: str, env: dict | None = None, timeout: float = 300):
    """Run the installed `meqg` console script as a user would (its process group ended on timeout).

    Each launch costs ~3 s of interpreter and imports: one per command keeps the entry point
    honest; the many error cases go through `cli`."""
    from .processes import run

    exe = Path(sys.executable).with_name("meqg")
    return run([str(exe), *args], timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3-compatible server (moto's server mode) on 127.0.0.1, ended with the session."""
    import socket
    import urllib.request

    from .processes import child, wait_until

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"

    def answering():
        try:
            return urllib.request.urlopen(endpoint, timeout=2).status == 200
        except OSError:
            return False

    args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with child(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as server:
        wait_until(answering, 60, "the S3 server answering", process=server)
        yield endpoint


@pytest.fixture
def s3_store(s3_endpoint, monkeypatch, request) -> str:
    """s3://BUCKET/store in a fresh bucket; credentials and endpoint in the environment, as a user sets them."""
    import re
    import uuid

    import boto3

    environment = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "meqg-test",
        "AWS_SECRET_ACCESS_KEY": "meqg-test-secret",
        "AWS_REGION": "us-east-1",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    bucket = f"{re.sub('[^a-z0-9]+', '-', request.node.name.lower())[:40].strip('-')}-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/store"


# A tiny inverter on the sentence store, shared by the inversion, decode and episode tests.
def tiny_config(**inversion):
    from meqg_mlx.config import InversionConfig, MeqgConfig
    from meqg_mlx.inversion.inverter import ModelArgs

    config = MeqgConfig()
    config.inverter = ModelArgs(hidden=64, layers=2, heads=2, prefix_tokens=2, max_tokens=24)
    config.inversion = InversionConfig(
        **{"steps": 300, "batch_size": 16, "learning_rate": 3e-3, "warmup_steps": 10, "eval_every": 100, **inversion}
    )
    return config


@pytest.fixture(scope="session")
def memorized(sentence_store_path, embedder, tmp_path_factory):
    """A tiny inverter trained until it has learned the store's eleven training sentences (id 0 is held out)."""
    from meqg_mlx.concepts.store import ConceptStore
    from meqg_mlx.inversion.checkpoint import TrainedInverter
    from meqg_mlx.inversion.training import InverterTraining

    run = tmp_path_factory.mktemp("inverter-run")
    training = InverterTraining(ConceptStore.open(sentence_store_path), run, embedder, tiny_config())
    summary = training.train()
    return run, summary, TrainedInverter.load(summary.directory)


def memorized_on_a_copy(memorized, sentence_store_path, tmp_path: Path) -> tuple[Path, Path]:
    """(run, store): copies of the memorized inverter's run and of its store, the run pointing at the copy,
    for tests that change the store."""
    store, run = tmp_path / "store", tmp_path / "run"
    shutil.copytree(sentence_store_path, store)
    shutil.copytree(memorized[0], run)
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**meta, "store": str(store)}))
    return run, store


@pytest.fixture(scope="session")
def trained_run_path(small_store_path, tmp_path_factory) -> Path:
    """A VMM trained briefly on the small store, with checkpoints: what episodes, eval and the app open.
    Tests that write into a run copy it first."""
    from meqg_mlx.train.run import TrainingRun

    from .train.test_trainer import small_config

    run = tmp_path_factory.mktemp("trained") / "run"
    config = small_config(steps=40, learning_rate=3e-3, warmup_steps=5)
    config.episode.max_steps = 6
    TrainingRun(run, small_store_path, config).train()
    return run


def cli(*args: str) -> subprocess.CompletedProcess:
    """`meqg ARGS` in this process through the console script's own entry (`meqg_cli.main.run`):
    the same exit status and `error: ...` line as `meqg(...)`, without a new interpreter."""
    import contextlib
    import io

    from meqg_cli.main import run

    stdout, stderr, argv, status = io.StringIO(), io.StringIO(), sys.argv, 0
    sys.argv = ["meqg", *args]
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            run()
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(["meqg", *args], status, stdout.getvalue(), stderr.getvalue())
