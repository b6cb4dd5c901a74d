"""Ingest engines in one run: the in-process build, meqg's Ray actors (`--engine ray`) and
Daft on the same local Ray cluster, each embedding and committing the same planned batches
of the same sources into a fresh store with the same number of workers. Wall time counts
everything a user waits for (Ray's start included); the stores are then compared row for
row and vector for vector.

Daft is not a meqg dependency (0.7 pins pyarrow<26, below the pyarrow LanceDB installs
here), so run this from an environment that has both:

    pip install -e '.[ray]' daft
    python bench/ingest_engines.py [--source stdlib:json,...] [--workers 2] [--commit-rows 64]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

import meqg_mlx  # noqa: E402,F401  (BLAS set-up)
from meqg_mlx.concepts import ConceptStore  # noqa: E402
from meqg_mlx.concepts.build import build_store  # noqa: E402
from meqg_mlx.concepts.ray_build import RayIngest, start_local_ray  # noqa: E402
from meqg_mlx.config import MeqgConfig  # noqa: E402
from meqg_mlx.encoder import embedder_from_config  # noqa: E402


class _DaftWriter:
    """Daft's stateful UDF: the encoder and the store opened once per instance, like meqg's Ray actor."""

    def __init__(self, store_uri: str, store_config, make_embedder):
        from meqg_mlx.concepts.ray_build import _Writer

        self.writer = _Writer(store_uri, store_config, make_embedder)

    def write(self, batch: list) -> int:
        return self.writer.write(batch)[0]


@dataclass
class DaftIngest:
    """The planned batches as a Daft DataFrame, one row per batch, written by a Daft class UDF on Ray."""

    make_embedder: object
    workers: int

    def write(self, store, batches: list, config, summary, progress) -> None:
        import daft
        import ray

        start_local_ray()
        daft.set_runner_ray(noop_if_initialized=True)
        try:
            writer = daft.cls(_DaftWriter, cpus=1, max_retries=2)(store.uri, config, self.make_embedder)
            frame = daft.from_pydict({"batch": batches}).into_partitions(self.workers * 2)
            written = frame.select(writer.write(frame["batch"]).alias("written")).to_pydict()["written"]
            summary.added += sum(written)
        finally:
            store.refresh()
            ray.shutdown()


def run(name: str, sources: list[str], config: MeqgConfig, engine, directory: Path) -> tuple[float, float]:
    embedder = embedder_from_config(config)
    embedder.encode(["warm up"])
    started = time.perf_counter()
    summary = build_store(directory / name, sources, embedder, config.store, engine=engine)
    wall = time.perf_counter() - started
    print(
        f"{name:<11} {summary.added:7d} concepts in {wall:7.1f} s  ({summary.added / wall:6.1f} concepts/s; "
        f"indexing and domains {summary.index_seconds + summary.domain_seconds:.1f} s of it)",
        flush=True,
    )
    return wall, summary.added


def stored(path: Path) -> tuple[dict, np.ndarray]:
    store = ConceptStore.open(path)
    rows = store.columns(["concept_id", "text", "key", "source", "relations"]).to_pylist()
    ids, vectors = store.all_vectors()
    return {r["concept_id"]: (r["text"], r["key"], r["source"], str(r["relations"])) for r in rows}, vectors[
        np.argsort(ids)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", action="append", help="[default: stdlib:json,collections,pathlib,argparse]")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--commit-rows", type=int, default=64)
    args = parser.parse_args()
    sources = args.source or ["stdlib:json,collections,pathlib,argparse"]
    logging.getLogger("daft").setLevel(logging.WARNING)
    config = MeqgConfig()
    config.store.commit_rows = args.commit_rows
    make_embedder = partial(embedder_from_config, config)
    print(f"ingest engines on {os.cpu_count()} cores, {args.workers} workers, sources {sources}")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        here, _ = run("in-process", sources, config, None, directory)
        ray_wall, _ = run("meqg Ray", sources, config, RayIngest(make_embedder, workers=args.workers), directory)
        daft_wall, _ = run("Daft on Ray", sources, config, DaftIngest(make_embedder, args.workers), directory)
        print(f"Daft / meqg Ray wall time: {daft_wall / ray_wall:.2f}x; meqg Ray / in-process: {ray_wall / here:.2f}x")
        reference, vectors = stored(directory / "in-process")
        for name in ("meqg Ray", "Daft on Ray"):
            rows, theirs = stored(directory / name)
            same = rows == reference and np.allclose(theirs, vectors, atol=1e-5)
            print(f"{name}: {'the same' if same else 'NOT the same'} concepts, ids and vectors as in-process")


if __name__ == "__main__":
    main()
