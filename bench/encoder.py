"""Encoder throughput: the MLX BERT port against sentence-transformers (PyTorch) on the same sentences.

Both encode the same N real sentences (the store's concepts) with batch 64 and
length-bucketed batches, in one run, taking turns over BLOCKS interleaved quarters of the
sentences so that drifts of a busy machine's speed hit both alike; prints sentences/s,
the ratio, the mean cosine between the two, and peak memory (MLX's allocator; PyTorch
CPU: the process's peak RSS growth while it encodes its first quarter).

    python bench/encoder.py [--store DIR] [--sentences 5000] [--model DIR] [--dtype float32|float16|bfloat16]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import meqg_mlx  # noqa: E402,F401  (sets up BLAS for when mlx is first imported)
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
from meqg_mlx.backend import doctor_report  # noqa: E402
from meqg_mlx.concepts import ConceptStore  # noqa: E402
from meqg_mlx.encoder import load_embedder  # noqa: E402
from meqg_mlx.paths import default_store  # noqa: E402


BLOCKS = 4


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument("--sentences", type=int, default=5000)
    parser.add_argument("--model", default="", help="sentence-transformers directory [bundled MiniLM]")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    args = parser.parse_args()
    texts = ConceptStore.open(args.store or default_store()).columns(["text"])["text"].to_pylist()[: args.sentences]
    report = doctor_report(measure=False)
    print(f"{len(texts)} sentences, batch 64, MLX on {report['mlx_default_device']}, BLAS: {report['blas']}")

    reference = load_embedder(backend="torch", model=args.model)
    ours = load_embedder(backend="mlx", model=args.model, dtype=args.dtype)
    for encoder in (reference, ours):
        encoder.encode(texts[:64])
    seconds, vectors = {"torch": 0.0, "mlx": 0.0}, {"torch": [], "mlx": []}
    rss, torch_peak = peak_rss_mb(), None
    mx.reset_peak_memory()
    for start in range(BLOCKS):
        block = [texts[i] for i in range(start, len(texts), BLOCKS)]
        for name, encoder in (("torch", reference), ("mlx", ours)):
            tick = time.perf_counter()
            vectors[name].append(encoder.encode(block))
            seconds[name] += time.perf_counter() - tick
            if torch_peak is None:
                torch_peak = peak_rss_mb() - rss
    torch_seconds, mlx_seconds, mlx_peak = seconds["torch"], seconds["mlx"], mx.get_peak_memory() / 2**20
    expected, got = np.concatenate(vectors["torch"]), np.concatenate(vectors["mlx"])

    cosine = float(np.einsum("ij,ij->i", got, expected).mean())
    print(f"  MLX ({args.dtype})           {len(texts) / mlx_seconds:8.0f} sentences/s  peak {mlx_peak:6.0f} MB (MLX)")
    print(
        f"  sentence-transformers {len(texts) / torch_seconds:8.0f} sentences/s  "
        f"peak +{torch_peak:5.0f} MB (RSS growth)"
    )
    print(f"  MLX / sentence-transformers: {torch_seconds / mlx_seconds:.2f}x   mean cosine {cosine:.7f}")


if __name__ == "__main__":
    main()
