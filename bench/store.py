"""Concept store benchmark: meqg against peers measured in the same run.

* ingest: embedding concepts/s (meqg's token-length buckets vs sentence-transformers'
  own `encode`) and store writes/s (atomic LanceDB commits vs `np.save`);
* search: p50/p95 latency and recall@10 of meqg's search path against numpy brute
  force (the exact answer) on real stdlib embeddings and clustered synthetic vectors
  at 100k and 1M rows, shaped like the real ones (k-means means + residual covariance).
  `--lance` adds LanceDB's own IVF_PQ (+refine) for reference; `--faiss` adds Faiss's IVF-flat,
  IVF-PQ (+ exact re-ranking) and HNSW, each at the smallest nprobe / efSearch that reaches
  `store.ann_target_recall` on these queries (the way meqg calibrates its own index).

    python bench/store.py [--sizes 100000 1000000] [--queries 200] [--lance] [--faiss]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

import meqg_mlx  # noqa: E402,F401
from meqg_mlx.concepts import ConceptStore, NewConcept  # noqa: E402
from meqg_mlx.concepts.index import PartitionedIndex, top_k  # noqa: E402
from meqg_mlx.concepts.kmeans import assign, spherical_kmeans  # noqa: E402
from meqg_mlx.config import StoreConfig  # noqa: E402
from meqg_mlx.paths import default_store  # noqa: E402


def percentiles(seconds: list[float]) -> tuple[float, float]:
    return 1e3 * float(np.percentile(seconds, 50)), 1e3 * float(np.percentile(seconds, 95))


def numpy_brute_force(vectors: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    scores = vectors @ query
    return top_k(scores, k)


def fitted_vectors(real: np.ndarray, n: int, clusters: int = 1024, seed: int = 0) -> np.ndarray:
    """Synthetic unit vectors shaped like `real` embeddings: its k-means cluster means and
    frequencies, plus Gaussian residuals with the real pooled residual covariance."""
    rng = np.random.default_rng(seed)
    clusters = min(clusters, len(real) // 20)
    labels, _ = assign(real, spherical_kmeans(real, clusters, seed=seed))
    means = np.stack([real[labels == c].mean(axis=0) for c in range(clusters)]).astype(np.float32)
    residual = real - means[labels]
    chol = np.linalg.cholesky(np.cov(residual.T) + 1e-6 * np.eye(real.shape[1])).astype(np.float32)
    weights = np.bincount(labels, minlength=clusters) / len(real)
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        x = (
            means[rng.choice(clusters, m, p=weights)]
            + rng.standard_normal((m, real.shape[1])).astype(np.float32) @ chol.T
        )
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def real_vectors(paths: list[Path]) -> np.ndarray | None:
    """Every vector of the stores among `paths` that exist, or None: what shapes the synthetic ones."""
    real = [ConceptStore.open(path).all_vectors()[1] for path in paths if (path / "meqg_store.json").exists()]
    return np.concatenate(real) if real else None


def bench_ingest(count: int) -> np.ndarray:
    from meqg_mlx.concepts.build import source_records
    from meqg_mlx.encoder import default_embedder

    records = []
    for record in source_records("stdlib", StoreConfig()):
        records.append(record)
        if len(records) == count:
            break
    texts = [r.text for r in records]
    embedder = default_embedder()
    embedder.encode(texts[:64])
    t0 = time.perf_counter()
    vectors = embedder.encode(texts)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    embedder.model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    peer = time.perf_counter() - t0
    print(f"\n## ingest ({count} real stdlib concepts)")
    print(
        f"embedding  meqg {count / ours:8.0f} concepts/s | sentence-transformers encode {count / peer:8.0f}/s"
        f" | ratio {peer / ours:.2f}x"
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = ConceptStore.create(Path(tmp) / "s", embedder.dim, embedder.name)
        first = store.reserve_ids(count)
        rows = [NewConcept(first + i, r.text, vectors[i], r.kind, r.key, r.source) for i, r in enumerate(records)]
        t0 = time.perf_counter()
        for start in range(0, count, 1024):
            store.add(rows[start : start + 1024])
        write = time.perf_counter() - t0
        t0 = time.perf_counter()
        np.save(Path(tmp) / "peer.npy", vectors)
        peer_write = time.perf_counter() - t0
    print(
        f"writing    meqg {count / write:8.0f} concepts/s (LanceDB, 1024-row atomic commits) | "
        f"np.save {count / peer_write:8.0f}/s | write is {100 * write / (write + ours):.1f}% of ingest time"
    )
    return vectors


def bench_search(
    name: str, store: ConceptStore, vectors: np.ndarray, queries: np.ndarray, k: int = 10, nprobes: tuple[int, ...] = ()
) -> None:
    """Our search path (store-level ids, then with rows) vs numpy brute force on the same matrix."""
    truth, brute = [], []
    for q in queries:
        t0 = time.perf_counter()
        truth.append(set(numpy_brute_force(vectors, q, k).tolist()))
        brute.append(time.perf_counter() - t0)
    b50, b95 = percentiles(brute)
    print(f"\n## search: {name} ({len(vectors)} x {vectors.shape[1]}), index: {store.index_kind()}")
    print(f"numpy brute force       p50 {b50:7.2f} ms  p95 {b95:7.2f} ms  recall@10 1.000")
    store._search_ids(queries[0], k)  # load the index (memory-map) before timing
    settings = [None] + list(nprobes)
    for nprobe in settings:
        index = store._index
        if nprobe is not None:
            partitioned = PartitionedIndex.load(store.location)
            if partitioned is None:
                continue
            index = lambda q, kk: partitioned.search(q, kk, nprobe=nprobe)  # noqa: E731
        lat, recall = [], []
        for q, expected in zip(queries, truth):
            t0 = time.perf_counter()
            ids, _ = index(q, k)
            lat.append(time.perf_counter() - t0)
            recall.append(len(expected & set(ids.tolist())) / k)
        p50, p95 = percentiles(lat)
        label = "meqg search (default)" if nprobe is None else f"  nprobe={nprobe}"
        print(
            f"{label:<23} p50 {p50:7.2f} ms  p95 {p95:7.2f} ms  recall@10 {np.mean(recall):.3f}"
            f"  speed-up vs numpy p50 {b50 / p50:6.1f}x"
        )
    lat = []
    for q in queries[:50]:
        t0 = time.perf_counter()
        store.search_vector(q, k)
        lat.append(time.perf_counter() - t0)
    p50, p95 = percentiles(lat)
    print(f"meqg search + rows      p50 {p50:7.2f} ms  p95 {p95:7.2f} ms  (ids, then text/kind/domain from LanceDB)")


def bench_lance(store: ConceptStore, vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> None:
    """LanceDB's own search on the same table, for the record (why meqg searches in memory)."""
    truth = [set(numpy_brute_force(vectors, q, k).tolist()) for q in queries[:50]]
    for label, config in [
        ("LanceDB flat scan", None),
        ("LanceDB IVF_PQ+refine20", dict(index_type="IVF_PQ", num_sub_vectors=48)),
    ]:
        t0 = time.perf_counter()
        if config:
            store.table.create_index(
                metric="cosine", vector_column_name="vector", num_partitions=int(np.sqrt(len(vectors))), **config
            )
        built = time.perf_counter() - t0
        lat, recall = [], []
        for q, expected in zip(queries[:50], truth):
            t0 = time.perf_counter()
            query = store.table.search(q, vector_column_name="vector").distance_type("cosine").limit(k)
            if config:
                query = query.nprobes(40).refine_factor(20)
            got = query.select(["concept_id"]).to_arrow()["concept_id"].to_pylist()
            lat.append(time.perf_counter() - t0)
            recall.append(len(expected & set(got)) / k)
        p50, p95 = percentiles(lat)
        print(
            f"{label:<23} p50 {p50:7.2f} ms  p95 {p95:7.2f} ms  recall@10 {np.mean(recall):.3f}"
            + (f"  (index build {built:.0f} s)" if config else "")
        )


FAISS_INDEXES = {  # name -> (factory string, knob, values tried in order)
    "IVF-flat": ("IVF{nlist},Flat", "nprobe", (1, 2, 4, 8, 16, 32, 64, 128, 256)),
    "IVF-PQ48 + refine": ("IVF{nlist},PQ48,RFlat", "nprobe", (1, 2, 4, 8, 16, 32, 64, 128, 256)),
    "HNSW32": ("HNSW32,Flat", "efSearch", (16, 32, 64, 128, 256, 512)),
}


def bench_faiss(vectors: np.ndarray, queries: np.ndarray, target: float, k: int = 10) -> None:
    """Faiss on the same vectors and queries (inner product = cosine on unit rows), each index at the
    smallest setting of its knob whose recall@10 reaches `target`."""
    import faiss

    truth = [set(numpy_brute_force(vectors, q, k).tolist()) for q in queries]
    nlist = int(4 * np.sqrt(len(vectors)))
    for name, (factory, knob, values) in FAISS_INDEXES.items():
        t0 = time.perf_counter()
        index = faiss.index_factory(vectors.shape[1], factory.format(nlist=nlist), faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.add(vectors)
        built = time.perf_counter() - t0
        size_mb = faiss.serialize_index(index).nbytes / 2**20
        for value in values:
            faiss.ParameterSpace().set_index_parameter(index, knob, value)
            if name.endswith("refine"):
                faiss.ParameterSpace().set_index_parameter(index, "k_factor_rf", 10)
            lat, recall = [], []
            for q, expected in zip(queries, truth):
                t0 = time.perf_counter()
                _, ids = index.search(q[None], k)
                lat.append(time.perf_counter() - t0)
                recall.append(len(expected & set(ids[0].tolist())) / k)
            if np.mean(recall) >= target or value == values[-1]:
                break
        p50, p95 = percentiles(lat)
        print(
            f"{'Faiss ' + name:<23} p50 {p50:7.2f} ms  p95 {p95:7.2f} ms  recall@10 {np.mean(recall):.3f}"
            f"  ({knob} {value}; build {built:.1f} s, index {size_mb:.0f} MB)"
        )


def synthetic_store(directory: Path, vectors: np.ndarray) -> ConceptStore:
    store = ConceptStore.create(directory, vectors.shape[1], "synthetic", StoreConfig())
    first = store.reserve_ids(len(vectors))
    t0 = time.perf_counter()
    for start in range(0, len(vectors), 100_000):
        chunk = vectors[start : start + 100_000]
        store.add(
            [NewConcept(first + start + i, f"synthetic concept {first + start + i}", v) for i, v in enumerate(chunk)]
        )
    written = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.optimize()
    built = store.build_index()
    print(
        f"\n(store of {len(vectors)} rows written in {written:.1f} s; compaction + "
        f"{'partitioned index' if built else 'no index'} {time.perf_counter() - t0:.1f} s)"
    )
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ingest", type=int, default=3000, help="concepts for the ingest benchmark (0: skip)")
    parser.add_argument(
        "--store",
        type=Path,
        nargs="*",
        default=[default_store()],
        help="real stores whose vectors are searched and shape the synthetic ones",
    )
    parser.add_argument("--lance", action="store_true", help="also time LanceDB's flat scan and IVF_PQ")
    parser.add_argument("--faiss", action="store_true", help="also time Faiss IVF-flat, IVF-PQ and HNSW")
    parser.add_argument("--nprobes", type=int, nargs="*", default=[8, 16, 32, 64])
    args = parser.parse_args()
    print(f"meqg bench/store.py on {os.cpu_count()} cores; BLAS for MLX: {meqg_mlx.backend.blas_description()}")
    sample = bench_ingest(args.ingest) if args.ingest else None
    rng = np.random.default_rng(1)
    real = real_vectors(args.store)
    if real is not None:
        held_out = rng.choice(len(real), args.queries, replace=False)
        keep = np.setdiff1d(np.arange(len(real)), held_out)
        with tempfile.TemporaryDirectory() as tmp:
            store = synthetic_store(Path(tmp) / "real", real[keep])
            store.build_index(force=True)
            bench_search(
                "real embeddings, held-out concepts as queries",
                store,
                real[keep],
                real[held_out],
                nprobes=tuple(args.nprobes),
            )
            if args.faiss:
                bench_faiss(real[keep], real[held_out], StoreConfig().ann_target_recall)
    elif real is None:
        print(f"\n(no real store at {args.store}: run `meqg demo` first for real-embedding figures)")
    fit_on = real if real is not None else sample
    if fit_on is None:
        raise SystemExit("need real vectors to shape the synthetic ones: a store (--store) or --ingest > 0")
    for size in args.sizes:
        vectors = fitted_vectors(fit_on, size + args.queries, seed=size)
        queries, vectors = vectors[: args.queries], vectors[args.queries :]
        with tempfile.TemporaryDirectory() as tmp:
            store = synthetic_store(Path(tmp) / "s", vectors)
            bench_search(f"synthetic fitted to real, {size}", store, vectors, queries, nprobes=tuple(args.nprobes))
            if args.lance:
                bench_lance(store, vectors, queries)
            if args.faiss:
                bench_faiss(vectors, queries, StoreConfig().ann_target_recall)
        del vectors
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
