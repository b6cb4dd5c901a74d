"""The store-as-memory reads (meqg_mlx/corpus/memory.py) against numpy doing the same exact search.

1. Batch reads (what `prepare` computes once per store version): N concept rows along one
   relation, top-`slots` edges by source cosine, own document left out; MLX (matmul,
   argpartition) against numpy (OpenBLAS matmul, argpartition), same rows, same answer.
2. One live read (what an episode or a rollout step pays): one vector along one relation.

    python bench/memory.py [--store DIR] [--relation hypernym] [--queries 4096] [--slots 16]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import meqg_mlx  # noqa: E402,F401  (sets up BLAS for when mlx is first imported)
import numpy as np  # noqa: E402
from meqg_mlx.concepts import ConceptStore  # noqa: E402
from meqg_mlx.corpus.memory import RelationMemory  # noqa: E402
from meqg_mlx.corpus.relations import RelationVocabulary, document_groups, store_edges  # noqa: E402
from meqg_mlx.corpus.sequences import ConceptTable  # noqa: E402
from meqg_mlx.paths import default_store  # noqa: E402


def numpy_reads(vectors, groups, edges, rows, slots):
    sources, own = vectors[edges.source], groups[edges.source]
    targets = np.empty((len(rows), slots), np.int64)
    for start in range(0, len(rows), 1024):
        block = rows[start : start + 1024]
        scores = vectors[block] @ sources.T
        scores[own[None] == groups[block][:, None]] = -np.inf
        top = np.argpartition(-scores, slots - 1, axis=1)[:, :slots]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1)
        targets[start : start + 1024] = edges.target[np.take_along_axis(top, order, 1)]
    return targets


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=str(default_store()))
    parser.add_argument("--relation", default="hypernym")
    parser.add_argument("--queries", type=int, default=4096)
    parser.add_argument("--slots", type=int, default=16)
    args = parser.parse_args()
    store = ConceptStore.open(args.store)
    table, vocabulary = ConceptTable(store), RelationVocabulary.of_store(store)
    relation = vocabulary.id(args.relation if args.relation in vocabulary.names else "next")
    edges = store_edges(store, table, vocabulary)
    groups = document_groups(store, table)
    memory = RelationMemory(table.vectors, edges, len(vocabulary), args.slots, groups)
    mine = memory.edges[relation]
    rows = np.random.default_rng(0).choice(np.unique(mine.source), min(args.queries, len(mine)), replace=False)
    kinds = np.full(len(rows), relation)
    ours = memory._search(table.vectors[rows], rows, kinds)
    theirs = numpy_reads(table.vectors, groups, mine, rows, args.slots)
    agree = float((ours.targets == theirs).all(1).mean())
    mlx_s = best_of(lambda: memory._search(table.vectors[rows], rows, kinds), 3)
    numpy_s = best_of(lambda: numpy_reads(table.vectors, groups, mine, rows, args.slots), 3)
    print(f"{store.uri}: {args.relation}, {len(mine):,} edges, {len(rows):,} reads of {args.slots} slots")
    print(f"batch reads  MLX {len(rows) / mlx_s:9.0f}/s   numpy {len(rows) / numpy_s:9.0f}/s   "
          f"ratio {numpy_s / mlx_s:.2f}x   same slots {agree:.3f} (ties may order apart)")  # fmt: skip
    one = table.vectors[rows[:1]]
    live = best_of(lambda: memory.read(one, kinds[:1]), 20)
    print(f"one live read {live * 1000:.2f} ms")


if __name__ == "__main__":
    main()
