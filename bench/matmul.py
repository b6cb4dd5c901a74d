"""MLX's float32 matmul against numpy's on the same shapes, in one run (what `meqg doctor` reports).

On Linux, MLX's CPU wheel bundles the reference BLAS (~3 GFLOP/s at 1024^3); meqg loads a
system OpenBLAS before mlx (`meqg_mlx.backend`). Prints GFLOP/s of each and the ratio.

    python bench/matmul.py [--sizes 256 1024 2048] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

from meqg_mlx import backend

backend.configure_blas()

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402


def numpy_gflops(n: int, repeats: int) -> float:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 / ((time.perf_counter() - start) / repeats) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"MLX on {mx.default_device()}, BLAS: {backend.blas_description()}")
    print(f"{'n':>6}{'MLX GFLOP/s':>14}{'numpy GFLOP/s':>16}{'MLX / numpy':>13}")
    for n in args.sizes:
        ours, peer = backend.matmul_gflops(n, args.repeats), numpy_gflops(n, args.repeats)
        print(f"{n:>6}{ours:>14.1f}{peer:>16.1f}{ours / peer:>12.2f}x")


if __name__ == "__main__":
    main()
