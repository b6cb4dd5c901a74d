"""meqg's kernels against their MLX-ops references, on the device at hand, in one run.

Each kernel and its reference get the same inputs; they run in turn, `--rounds` times, and
the median of each is printed with the batch and sequence length and the ratio
(reference time / kernel time: above 1 the kernel wins). SSD scan: forward alone (prefill;
a decoding step at l = 1) and forward+backward (training), against `ssd_chunked`, and at
l = 1 against `ssd_sequential`, what a decoding step ran before. Causal conv: against MLX's
grouped conv1d + bias + silu. Activations: against the
MLX ops. Softmax: the objective's cross-entropy and an attention block. Gate reductions:
over every parameter array of a VMM, against five MLX ops each. Nearest code (RVQ): against
MLX's scale, subtract and argmin over the same scores, with the scores' matmul timed alone.
Attention (the encoders'): against the query-blocked MLX ops it replaced and against MLX's
own CPU scaled_dot_product_attention, at MiniLM's shapes. Residual norm (BERT's post-norm):
against MLX's Linear (its bias) and LayerNorm of the sum. Context mix (the next-concept head):
against the L shifted multiply-adds, forward and with the weights' gradient (as training).

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
from meqg_mlx.kernels.activations import gelu, silu, softplus, swiglu
from meqg_mlx.kernels.attention import attention
from meqg_mlx.kernels.attention import reference as attention_reference
from meqg_mlx.kernels.conv import causal_conv_silu
from meqg_mlx.kernels.conv import reference as conv_reference
from meqg_mlx.kernels.gate import gate_reductions, gate_reductions_reference
from meqg_mlx.kernels.mix import context_mix
from meqg_mlx.kernels.mix import reference as mix_reference
from meqg_mlx.kernels.norm import residual_layer_norm
from meqg_mlx.kernels.rvq import KERNEL_MIN_ROWS, nearest_code
from meqg_mlx.kernels.rvq import reference as nearest_code_reference
from meqg_mlx.kernels.softmax import cross_entropy, softmax
from meqg_mlx.kernels.ssd import ssd_chunked, ssd_scan, ssd_sequential
from meqg_mlx.vmm.model import VMM, ModelArgs
from mlx.utils import tree_flatten

# (batch, length, heads, head_dim, groups, d_state, chunk): bench/train.py's VMM, the default
# VMM (d_model 256) on longer documents, long prefills, and a decoding step.
BENCH_VMM = ModelArgs(d_model=128, n_layers=2, d_state=32, head_dim=32, chunk_size=32, n_experts=4, d_ff=256)
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


def timed(cells: str, times: dict, reference: str = "reference") -> str:
    """A table row: its leading cells, then kernel ms, reference ms and reference / kernel."""
    return f"{cells}{times['kernel']:>11.3f}{times[reference]:>14.3f}{times[reference] / times['kernel']:>7.2f}x"


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
                print(timed(f"{b:>6}{length:>8}{f'{h} x {p} x {n}':>15}{label:>18}", times, reference), "vs", reference)


def bench_conv(rounds: int) -> None:
    print(f"\n## causal_conv ({kernel_status('causal_conv').reason})")
    print(f"{'batch':>6}{'length':>8}{'channels':>10}{'pass':>18}{'kernel ms':>11}{'reference ms':>14}{'ratio':>8}")
    # the bench VMM's mixer (d_inner 256 + B, C), the default VMM's on longer documents, a decoding step
    for b, length, channels in [(16, 32, 320), (8, 256, 640), (1, 1, 640)]:
        args = (mx.random.normal((b, length + 3, channels)), mx.random.normal((channels, 4, 1)), mx.zeros((channels,)))
        mx.eval(args)
        convs = {"kernel": causal_conv_silu, "reference": conv_reference}
        for label, make in (
            ("forward", lambda f: lambda: mx.eval(f(*args))),
            (
                "forward+backward",
                lambda f: (lambda g: lambda: mx.eval(g(*args)))(mx.grad(lambda *a: mx.square(f(*a)).sum(), (0, 1, 2))),
            ),
        ):
            times = median_ms({name: make(conv) for name, conv in convs.items()}, rounds)
            print(timed(f"{b:>6}{length:>8}{channels:>10}{label:>18}", times))


def bench_mix(rounds: int) -> None:
    print(f"\n## context_mix ({kernel_status('context_mix').reason})")
    if kernel_status("context_mix").backend is None:
        return
    print(f"{'batch':>6}{'length':>8}{'lags x width':>14}{'pass':>18}{'kernel ms':>11}{'reference ms':>14}{'ratio':>8}")
    lags = ModelArgs.context_lags
    for b, length in [(16, 32), (8, 256), (1, 1)]:  # bench/train.py's batch, longer documents, a decoding step
        window = mx.random.normal((b, length + lags - 1, 384))
        weights = mx.softmax(mx.random.normal((b, length, lags)), axis=-1)
        mx.eval(window, weights)
        mixes = {"kernel": context_mix, "reference": mix_reference}
        for label, make in (
            ("forward", lambda f: lambda: mx.eval(f(window, weights))),
            (
                "forward+backward",  # the weights' gradient only: in training the window is data
                lambda f: (lambda g: lambda: mx.eval(g(weights)))(mx.grad(lambda a: mx.square(f(window, a)).sum())),
            ),
        ):
            times = median_ms({name: make(mix) for name, mix in mixes.items()}, rounds)
            print(timed(f"{b:>6}{length:>8}{f'{lags} x 384':>14}{label:>18}", times))


def bench_activations(rounds: int) -> None:
    print(f"\n## activations ({kernel_status('activations').reason})")
    if kernel_status("activations").backend is None:
        return
    print(f"{'shape':>14}{'op':>10}{'pass':>18}{'kernel ms':>11}{'MLX op ms':>14}{'ratio':>8}")
    for shape in [(512, 256), (16 * 128, 1536)]:  # the bench VMM's expert width; MiniLM's FFN at 16 x 128
        x, y = mx.random.normal(shape) * 3, mx.random.normal(shape)
        mx.eval(x, y)
        pairs = {
            "silu": (silu, nn.silu),
            "softplus": (softplus, nn.softplus),
            "gelu": (gelu, nn.gelu),
            "swiglu": (lambda a: swiglu(a, y), lambda a: nn.silu(a) * y),
        }
        for name, (kernel, reference) in pairs.items():
            for label, make in (
                ("forward", lambda f: lambda: mx.eval(f(x))),
                ("forward+backward", lambda f: (lambda g: lambda: mx.eval(g(x)))(mx.grad(lambda v: (f(v) * y).sum()))),
            ):
                times = median_ms({"kernel": make(kernel), "reference": make(reference)}, rounds)
                print(timed(f"{str(shape):>14}{name:>10}{label:>18}", times))


def bench_softmax(rounds: int) -> None:
    print(f"\n## softmax ({kernel_status('softmax').reason})")
    if kernel_status("softmax").backend is None:
        return
    print(f"{'rows x length':>16}{'op':>23}{'kernel ms':>11}{'MLX op ms':>14}{'ratio':>8}")
    # the objective's in-batch InfoNCE (bench/train.py's batch) and one query block of MiniLM attention
    for rows, length in [(512, 512), (64 * 12 * 64, 128)]:
        x = mx.random.normal((rows, length)) * 4
        targets = mx.random.randint(0, length, (rows,))
        mx.eval(x, targets)
        pairs = {
            "softmax": (lambda: mx.eval(softmax(x)), lambda: mx.eval(mx.softmax(x, axis=-1))),
            "cross-entropy": (
                (lambda g: lambda: mx.eval(g(x)))(mx.value_and_grad(lambda v: cross_entropy(v, targets).sum())),
                (lambda g: lambda: mx.eval(g(x)))(
                    mx.value_and_grad(lambda v: nn.losses.cross_entropy(v, targets).sum())
                ),
            ),
        }
        for name, (kernel, reference) in pairs.items():
            times = median_ms({"kernel": kernel, "reference": reference}, rounds)
            label = name + (" fwd+bwd" if name == "cross-entropy" else "")
            print(timed(f"{f'{rows} x {length}':>16}{label:>23}", times))


def bench_attention(rounds: int) -> None:
    print(f"\n## attention ({kernel_status('attention').reason})")
    if kernel_status("attention").backend is None:
        return
    header = f"{'batch':>6}{'length':>8}{'heads x dim':>13}{'kernel ms':>11}{'blocked ms':>14}{'ratio':>8}"
    print(header + f"{'MLX sdpa ms':>13}")
    for b, length in [(64, 32), (64, 96), (16, 256)]:  # bench/encoder.py's batches of short and long sentences
        q, k, v = (mx.random.normal((b, length, 12, 32)) for _ in range(3))
        mask = mx.zeros((b, 1, 1, length))
        heads_first = [a.transpose(0, 2, 1, 3) for a in (q, k, v)]
        mx.eval(q, k, v, mask, heads_first)
        times = median_ms(
            {
                "kernel": lambda: mx.eval(attention(q, k, v, 32**-0.5, mask)),
                "reference": lambda: mx.eval(attention_reference(q, k, v, 32**-0.5, mask)),
                "sdpa": lambda: mx.eval(mx.fast.scaled_dot_product_attention(*heads_first, scale=32**-0.5, mask=mask)),
            },
            rounds,
        )
        print(timed(f"{b:>6}{length:>8}{'12 x 32':>13}", times) + f"{times['sdpa']:>13.3f}")


def bench_residual_norm(rounds: int) -> None:
    print(f"\n## residual_norm ({kernel_status('residual_norm').reason})")
    if kernel_status("residual_norm").backend is None:
        return
    print(f"{'batch':>6}{'length':>8}{'width':>7}{'pass':>26}{'kernel ms':>11}{'MLX ops ms':>14}{'ratio':>8}")
    linear, norm = nn.Linear(1536, 384), nn.LayerNorm(384, eps=1e-12)
    for b, length in [(64, 32), (64, 96)]:  # MiniLM's FFN output, as bench/encoder.py's batches
        x, inner = mx.random.normal((b, length, 384)), mx.random.normal((b, length, 1536))
        mx.eval(x, inner, linear.parameters(), norm.parameters())
        times = median_ms(
            {
                "kernel": lambda: mx.eval(
                    residual_layer_norm(x, inner @ linear.weight.T, linear.bias, norm.weight, norm.bias, norm.eps)
                ),
                "reference": lambda: mx.eval(norm(x + linear(inner))),
            },
            rounds,
        )
        print(timed(f"{b:>6}{length:>8}{384:>7}{'projection + bias + norm':>26}", times))


def bench_rvq(rounds: int) -> None:
    print(f"\n## nearest_code ({kernel_status('nearest_code').reason})")
    # a store's vectors coded at training start, a batch's targets, one decoding step's candidate
    for rows, codes in [(20000, 256), (512, 64), (1, 256)]:
        residual, book = mx.random.normal((rows, 384)), mx.random.normal((codes, 384))
        mx.eval(residual, book)
        times = median_ms(
            {
                "kernel": lambda: mx.eval(nearest_code(residual, book)),
                "reference": lambda: mx.eval(nearest_code_reference(residual, book)),
                "matmul": lambda: mx.eval(residual @ book.T),
            },
            rounds,
        )
        dispatch = "" if rows >= KERNEL_MIN_ROWS else f"; below {KERNEL_MIN_ROWS} rows both run the MLX ops"
        print(
            timed(f"  {rows:>6} rows x {codes:>4} codes x 384:", times)
            + f"   (the scores' matmul alone: {times['matmul']:.3f} ms{dispatch})"
        )


def bench_gate(rounds: int) -> None:
    print(f"\n## gate_reductions ({kernel_status('gate_reductions').reason})")
    if kernel_status("gate_reductions").backend is None:
        return
    for name, args in (("bench/train.py's VMM", BENCH_VMM), ("the default VMM", ModelArgs())):
        model = VMM(args)
        before = [v for _, v in tree_flatten(model.trainable_parameters())]
        proposed = [v + 1e-3 * mx.random.normal(v.shape) for v in before]
        grads = [mx.random.normal(v.shape) for v in before]
        mx.eval(before, proposed, grads)
        times = median_ms(
            {
                "kernel": lambda: mx.eval(gate_reductions(before, proposed, grads)),
                "reference": lambda: mx.eval(gate_reductions_reference(before, proposed, grads)),
            },
            rounds,
        )
        weights = sum(v.size for v in before)
        print(
            f"  {name}: {len(before)} arrays, {weights:,} weights: kernel {times['kernel']:.3f} ms, "
            f"MLX ops {times['reference']:.3f} ms, {times['reference'] / times['kernel']:.2f}x"
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
    bench_conv(args.rounds)
    bench_mix(args.rounds)
    bench_activations(args.rounds)
    bench_softmax(args.rounds)
    bench_attention(args.rounds)
    bench_residual_norm(args.rounds)
    bench_gate(args.rounds)
    bench_rvq(args.rounds)


if __name__ == "__main__":
    main()
