"""meqg's kernels against their MLX-ops references, on the device at hand, in one run.

Each kernel and its reference get the same inputs; they run in turn, `--rounds` times, and
the median of each is printed with the batch and sequence length and the ratio
(reference time / kernel time: above 1 the kernel wins). SSD scan: forward alone (prefill;
a decoding step at l = 1) and forward+backward (training), against `ssd_chunked`, and at
l = 1 against `ssd_sequential`, what a decoding step ran before.

    python bench/kernels.py [--rounds 7] [--device cpu|gpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import meqg_mlx  # noqa: F401  (sets up BLAS for when mlx is first imported)
import mlx.core as mx
import mlx.nn as nn

from meqg_mlx.backend import doctor_report
from meqg_mlx.kernels import kernel_status
from meqg_mlx.kernels.ssd import ssd_scan
from meqg_mlx.vmm.ssd import ssd_chunked, ssd_sequential

# (batch, length, heads, head_dim, groups, d_state, chunk): bench/train.py's VMM, the default
# VMM (d_model 256) on longer documents, long prefills, and a decoding step.
SSD_SHAPES = [
    (16, 32, 8, 32, 1, 32, 32),
    (8, 256, 8, 64, 1, 64, 64),
    (1, 2048, 8, 64, 1, 64, 64),
    (1, 8192, 8, 64, 1, 64, 64),
    (1, 1, 8, 64, 1, 64, 64),
]


def median_ms(runs: dict, rounds: int) -> dict:
    """Median milliseconds of each callable, the callables taking turns every round."""
    for run in runs.values():
        run()  # build, compile, warm caches
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append(1e3 * (time.perf_counter() - started))
    return {name: statistics.median(t) for name, t in times.items()}


def ssd_inputs(b, length, h, p, g, n):
    x = mx.random.normal((b, length, h, p))
    dt = nn.softplus(mx.random.normal((b, length, h)) - 1.0)
    A = -mx.exp(mx.random.normal((h,)))
    B, C = mx.random.normal((b, length, g, n)), mx.random.normal((b, length, g, n))
    D, state = mx.random.normal((h,)), mx.random.normal((b, h, p, n))
    mx.eval(x, dt, A, B, C, D, state)
    return x, dt, A, B, C, D, state


def bench_ssd(rounds: int) -> None:
    print(f"\n## ssd_scan ({kernel_status('ssd_scan').reason})")
    print(
        f"{'batch':>6}{'length':>8}{'heads x p x n':>15}{'pass':>18}{'kernel ms':>11}{'reference ms':>14}{'ratio':>8}"
    )
    for b, length, h, p, g, n, chunk in SSD_SHAPES:
        args = ssd_inputs(b, length, h, p, g, n)
        references = {"ssd_chunked": lambda *a: ssd_chunked(*a[:6], chunk, a[6])}
        if length == 1:
            references["ssd_sequential"] = lambda *a: ssd_sequential(*a)
        scans = {"kernel": lambda *a: ssd_scan(*a[:6], chunk, a[6]), **references}

        def forward(scan):
            return lambda: mx.eval(scan(*args))

        def training(scan):
            grad = mx.grad(lambda *a: sum((o * o).sum() for o in scan(*a)), argnums=tuple(range(7)))
            return lambda: mx.eval(grad(*args))

        for label, make in (("forward", forward), ("forward+backward", training)):
            times = median_ms({name: make(scan) for name, scan in scans.items()}, rounds)
            for reference in references:
                print(
                    f"{b:>6}{length:>8}{f'{h} x {p} x {n}':>15}{label:>18}{times['kernel']:>11.3f}"
                    f"{times[reference]:>14.3f}{times[reference] / times['kernel']:>7.2f}x  vs {reference}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--device", choices=["cpu", "gpu"], default=None, help="[MLX's default device]")
    args = parser.parse_args()
    if args.device:
        mx.set_default_device(mx.cpu if args.device == "cpu" else mx.gpu)
    report = doctor_report(measure=False)
    print(f"mlx {report['versions']['mlx']} on {mx.default_device()}, BLAS: {report['blas']}")
    mx.random.seed(0)
    bench_ssd(args.rounds)


if __name__ == "__main__":
    main()
