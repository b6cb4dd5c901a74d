"""The concept store's search at 1M and 10M vectors, every index in one run.

For each size: synthetic unit vectors shaped like real MiniLM embeddings are written
once to a memory-mapped file (never all in RAM), from there into a local store and,
with `--s3`, into a store on an S3 server (moto's, started here on 127.0.0.1, or the
one AWS_* points at with `--s3-uri`). Each method then builds and searches in fresh
processes, so resident memory is its own: peak RSS while building, RSS while serving.

* numpy brute force (the exact answer, and the recall reference) and our in-memory
  IVF-flat index, where the vectors fit in half the machine's RAM;
* LanceDB's IVF_RQ disk index (`disk_index.py`), on local disk and on the S3 server;
* with `--faiss`, Faiss IVF-flat / IVF-PQ + refine / HNSW where they fit.

    python bench/store_scale.py [--sizes 1000000 10000000] [--s3] [--faiss] [--queries 200] [--store DIR]

The synthetic vectors come from `bench/store.py`'s generator, fitted to the real stores given.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

K = 10


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set of this process in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def memory_total_mb() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20


# ----- the parent: data, truth, one child per (method, phase) ------------------------------------------
def write_vectors(path: Path, fit_on: np.ndarray, size: int, queries: int, seed: int) -> np.ndarray:
    """size + queries fitted vectors into a .npy memmap at `path`; returns the queries (the first rows)."""
    from store import fitted_vectors  # bench/store.py, the one generator of shaped vectors

    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(size + queries, fit_on.shape[1]))
    for start in range(0, size + queries, 1_000_000):
        count = min(1_000_000, size + queries - start)
        out[start : start + count] = fitted_vectors(fit_on, count, seed=seed + start)
    out.flush()
    return np.array(out[:queries])


def exact_truth(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Row numbers of each query's K nearest rows, streaming the memmap in 1M-row blocks."""
    best_scores = np.full((len(queries), K), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), K), dtype=np.int64)
    for start in range(0, len(vectors), 1_000_000):
        block = np.asarray(vectors[start : start + 1_000_000])
        scores = queries @ block.T
        top = np.argpartition(-scores, K - 1, axis=1)[:, :K]
        merged_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, 1)], axis=1)
        merged_rows = np.concatenate([best_rows, top + start], axis=1)
        keep = np.argsort(-merged_scores, axis=1)[:, :K]
        best_scores, best_rows = np.take_along_axis(merged_scores, keep, 1), np.take_along_axis(merged_rows, keep, 1)
    return best_rows


def write_store(uri: str, vectors: np.ndarray, rows_per_file: int | None = None) -> float:
    """The store holding rows 0.. of `vectors` as concept ids 0..; returns seconds taken.

    Compacted like a built store, unless `rows_per_file` keeps it in commits of that size.
    """
    from meqg_mlx.concepts import ConceptStore, NewConcept
    from meqg_mlx.config import StoreConfig

    started = time.perf_counter()
    store = ConceptStore.create(uri, vectors.shape[1], "synthetic", StoreConfig())
    store.reserve_ids(len(vectors))
    step = rows_per_file or 200_000
    for start in range(0, len(vectors), step):
        chunk = np.asarray(vectors[start : start + step])
        store.add([NewConcept(start + i, f"synthetic concept {start + i}", v) for i, v in enumerate(chunk)])
    if rows_per_file is None:
        store.optimize()
    return time.perf_counter() - started


def child(method: str, phase: str, uri: str, work: Path, env: dict | None = None) -> dict:
    args = [sys.executable, __file__, "--child", method, phase, uri, str(work)]
    done = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_scale(sizes: list[int], fit_on: np.ndarray, queries: int, s3: bool, s3_uri: str | None, faiss: bool):
    import tempfile

    gb = lambda n: n * fit_on.shape[1] * 4 / 2**30  # noqa: E731
    ram = memory_total_mb() / 1024
    print(f"\n## scale: {ram:.0f} GB RAM; in-memory methods run where the vectors fit in half of it")
    with tempfile.TemporaryDirectory(dir=os.environ.get("MEQG_BENCH_DIR")) as tmp, _s3_server(s3, s3_uri) as s3_env:
        s3_base = s3_env.pop("MEQG_BENCH_S3_BASE") if s3_env is not None else None
        for size in sizes:
            work = Path(tmp) / str(size)
            work.mkdir()
            t0 = time.perf_counter()
            query_rows = write_vectors(work / "all.npy", fit_on, size, queries, seed=size)
            vectors = np.load(work / "all.npy", mmap_mode="r")[queries:]
            np.save(work / "queries.npy", query_rows)
            np.save(work / "truth.npy", exact_truth(vectors, query_rows))
            print(
                f"\n### {size:,} x {fit_on.shape[1]} ({gb(size):.1f} GB float32): vectors and exact answers "
                f"{time.perf_counter() - t0:.0f} s"
            )
            local = str(work / "store")
            print(f"local store written in {write_store(local, vectors):.0f} s")
            fits = gb(size) < ram / 2
            methods = [("numpy", local), ("memory", local)] if fits else []
            methods += [("disk", local)]
            if s3_env is not None:
                remote = f"{s3_base}/{size}"
                # moto copies a whole object for every ranged GET (moto/s3/responses.py,
                # _handle_range_header), so on moto the store stays in 10k-row files
                rows_per_file = 10_000 if s3_uri is None else None
                with _environment(s3_env):
                    seconds = write_store(remote, vectors, rows_per_file)
                    files = " in 10k-row files" if rows_per_file else ""
                    print(f"S3 store ({remote}) written in {seconds:.0f} s{files}")
                methods += [("disk", remote)]
            if faiss and fits:
                methods += [(f"faiss:{name}", local) for name in ("IVF-flat", "IVF-PQ48 + refine", "HNSW32")]
            if not fits:
                print(f"numpy, the in-memory index and Faiss skipped: {gb(size):.1f} GB of vectors, {ram:.0f} GB RAM")
            print(
                f"{'method':<34} {'build s':>8} {'build RSS':>10} {'serve RSS':>10} {'p50 ms':>8} "
                f"{'p95 ms':>8} {'recall@10':>9}  setting"
            )
            for method, uri in methods:
                built = child(method, "build", uri, work, s3_env) if method in ("memory", "disk") else {}
                served = child(method, "search", uri, work, s3_env) if "error" not in built else built
                built = built or served  # numpy and Faiss load or build in the process that searches
                where = "S3 server" if uri.startswith("s3://") else "local"
                label = {"numpy": "numpy brute force", "memory": "meqg in-memory IVF-flat"}.get(method, method)
                label = f"LanceDB IVF_RQ disk ({where})" if method == "disk" else label.replace("faiss:", "Faiss ")
                if "error" in served:
                    print(f"{label:<34} failed: {served['error']}")
                    continue
                print(
                    f"{label:<34} {built['seconds']:8.1f} {built['peak_mb']:8.0f}MB {served['rss_mb']:8.0f}MB "
                    f"{served['p50']:8.2f} {served['p95']:8.2f} {served['recall']:9.3f}  {served['setting']}"
                )


class _environment:
    def __init__(self, values: dict):
        self.values, self.saved = values, {}

    def __enter__(self):
        self.saved = {k: os.environ.get(k) for k in self.values}
        os.environ.update(self.values)

    def __exit__(self, *exc):
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _s3_server:
    """moto's S3 server on 127.0.0.1 (or the AWS_* environment's with an explicit URI), for the bench's run."""

    def __init__(self, enabled: bool, uri: str | None):
        self.enabled, self.uri, self.process = enabled or uri is not None, uri, None

    def __enter__(self) -> dict | None:
        if not self.enabled:
            return None
        if self.uri:
            return {"MEQG_BENCH_S3_BASE": self.uri.rstrip("/")}
        import socket
        import urllib.request

        import boto3

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        endpoint = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit("the moto S3 server did not start") from None
                time.sleep(0.2)
        env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
        env["AWS_REGION"] = "us-east-1"
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name="us-east-1",
        ).create_bucket(Bucket="meqg-bench")
        return {**env, "MEQG_BENCH_S3_BASE": "s3://meqg-bench/stores"}

    def __exit__(self, *exc):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)


# ----- a child: one method, one phase, its own memory ------------------------------------------------
def run_child(method: str, phase: str, uri: str, work: Path) -> dict:
    from meqg_mlx.concepts import ConceptStore
    from meqg_mlx.config import StoreConfig

    queries, truth = np.load(work / "queries.npy"), np.load(work / "truth.npy")
    config = StoreConfig(exact_search_max_rows=0, disk_index_min_rows=2**62)
    store = ConceptStore.open(uri, config)
    started, loaded = time.perf_counter(), {}
    if method == "numpy":
        ids, vectors = store.all_vectors()
        search, setting = (lambda q: ids[np.argpartition(-(vectors @ q), K - 1)[:K]]), "exact"
        loaded = {"seconds": time.perf_counter() - started, "peak_mb": rss_mb()[1]}
    elif method in ("memory", "disk"):
        if phase == "build":
            store.build_index(force=True, kind=method)
            return {"seconds": time.perf_counter() - started, "peak_mb": rss_mb()[1]}
        search = lambda q: store.nearest(q, K)[0]  # noqa: E731
        setting = store.index_kind().split(":", 1)[1].split("(")[0].strip()
    else:
        search, setting = faiss_index(method.split(":", 1)[1], store, queries, truth)
        loaded = {"seconds": time.perf_counter() - started, "peak_mb": rss_mb()[1]}
    search(queries[0])
    latencies, recall = [], []
    for query, expected in zip(queries, truth):
        t0 = time.perf_counter()
        found = search(query)
        latencies.append(time.perf_counter() - t0)
        recall.append(len(set(np.asarray(found).tolist()) & set(expected.tolist())) / K)
    return {
        **loaded,
        "p50": 1e3 * float(np.percentile(latencies, 50)),
        "p95": 1e3 * float(np.percentile(latencies, 95)),
        "recall": float(np.mean(recall)),
        "rss_mb": rss_mb()[0],
        "setting": setting,
    }


def faiss_index(name: str, store, queries: np.ndarray, truth: np.ndarray):
    """The Faiss index `name` at the smallest knob setting reaching the store's target recall."""
    import faiss
    from store import FAISS_INDEXES

    from meqg_mlx.config import StoreConfig

    ids, vectors = store.all_vectors()
    factory, knob, values = FAISS_INDEXES[name]
    index = faiss.index_factory(
        vectors.shape[1], factory.format(nlist=int(4 * np.sqrt(len(vectors)))), faiss.METRIC_INNER_PRODUCT
    )
    index.train(vectors)
    index.add(vectors)
    del vectors
    for value in values:
        faiss.ParameterSpace().set_index_parameter(index, knob, value)
        if name.endswith("refine"):
            faiss.ParameterSpace().set_index_parameter(index, "k_factor_rf", 10)
        found = ids[index.search(queries, K)[1]]
        recall = np.mean([len(set(f) & set(t)) / K for f, t in zip(found.tolist(), truth.tolist())])
        if recall >= StoreConfig().ann_target_recall:
            break
    return (lambda q: ids[index.search(q[None], K)[1][0]]), f"{knob} {value}"


def main() -> None:
    from store import real_vectors

    from meqg_mlx.paths import default_store

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1_000_000, 10_000_000])
    parser.add_argument("--s3", action="store_true", help="also on an S3 server (moto, on 127.0.0.1)")
    parser.add_argument("--s3-uri", help="this s3://BUCKET/PATH (AWS_* environment) instead of moto")
    parser.add_argument("--faiss", action="store_true", help="also Faiss IVF-flat, IVF-PQ and HNSW where they fit")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--store", type=Path, nargs="*", default=[default_store()], help="real stores to fit")
    args = parser.parse_args()
    fit_on = real_vectors(args.store)
    if fit_on is None:
        raise SystemExit(f"need real vectors to shape the synthetic ones: no store at {args.store} (run `meqg demo`)")
    run_scale(args.sizes, fit_on, args.queries, args.s3, args.s3_uri, args.faiss)


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    sys.path.insert(0, str(Path(__file__).parent))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import meqg_mlx  # noqa: F401  (BLAS set-up)

    print(json.dumps(run_child(sys.argv[2], sys.argv[3], sys.argv[4], Path(sys.argv[5]))))
elif __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import meqg_mlx  # noqa: F401  (BLAS set-up)

    main()
