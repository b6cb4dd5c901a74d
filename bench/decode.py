"""Decoding benchmark: one Diamond episode step with the VMM's cache against re-reading the whole context.

An episode step puts `--slots` retrieved store concepts and the last concept after the
context and takes the VMM's output at the end. Before the cache (the engine until issue 16)
every step ran the whole sequence through the VMM; now the cache holds the context before
the last concept, a step commits the concept accepted last and feeds slots + last into a
fork of it. Both run here on the same weights, the same contexts, interleaved per round so
the machine's drifts hit them alike; printed: ms per step at each context length and the
ratio. The outputs of the two are checked to agree before anything is timed.

    python bench/decode.py [--contexts 16,64,256] [--rounds 20] [--demo]

`--demo` uses `meqg demo`'s small VMM; the default is ModelArgs' defaults (d_model 256, 4 layers).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import meqg_mlx  # noqa: F401  (sets up BLAS for when mlx is first imported)
import mlx.core as mx
import numpy as np
from meqg_mlx.backend import doctor_report
from meqg_mlx.config import load_config
from meqg_mlx.vmm.model import VMM, ModelArgs

CONCEPT_DIM = 384  # all-MiniLM-L6-v2's


def unit_rows(rng: np.random.Generator, count: int) -> np.ndarray:
    x = rng.normal(size=(count, CONCEPT_DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def whole_context_step(model: VMM, context: np.ndarray, slots: np.ndarray) -> mx.array:
    sequence = np.concatenate([context[:-1], slots, context[-1:]])
    out = model(mx.array(sequence)[None]).next_vector[0, -1]
    mx.eval(out)
    return out


def cached_step(model: VMM, cache, committed: np.ndarray, last: np.ndarray, slots: np.ndarray) -> mx.array:
    """Commit the concepts the cache lacks (one, in an episode's steady state), then read slots + last in a fork."""
    model(mx.array(committed)[None], cache=cache)
    out = model(mx.array(np.concatenate([slots, last[None]]))[None], cache=cache.copy()).next_vector[0, -1]
    mx.eval(out)
    return out


def measure(model: VMM, length: int, rounds: int, slots: int, rng: np.random.Generator) -> tuple[float, float]:
    """Median ms per step (whole context, cached) at context `length`."""
    context = unit_rows(rng, length + rounds + 1)
    retrieved = unit_rows(rng, slots)
    cache = model.make_cache()
    model(mx.array(context[: length - 2])[None], cache=cache)  # the cache lacks one concept, as in a step
    cached_out = cached_step(model, cache, context[length - 2 : length - 1], context[length - 1], retrieved)
    whole_out = whole_context_step(model, context[:length], retrieved)
    gap = float(mx.abs(cached_out - whole_out).max())
    if gap > 1e-4:
        raise SystemExit(f"the cached step disagrees with the whole forward by {gap:.2e} at context {length}")
    whole, cached = [], []
    for r in range(rounds):
        end = length + r + 1  # one more concept accepted each round
        started = time.perf_counter()
        whole_context_step(model, context[:end], retrieved)
        whole.append(time.perf_counter() - started)
        started = time.perf_counter()
        cached_step(model, cache, context[end - 2 : end - 1], context[end - 1], retrieved)
        cached.append(time.perf_counter() - started)
    return 1000 * statistics.median(whole), 1000 * statistics.median(cached)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", default="16,64,256")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--demo", action="store_true", help="meqg demo's VMM instead of the default ModelArgs")
    args = parser.parse_args()
    if args.demo:
        from meqg_data import DEMO_CONFIG

        model_args = load_config(DEMO_CONFIG).vmm
    else:
        model_args = ModelArgs()
    model_args = dataclasses.replace(model_args, concept_dim=CONCEPT_DIM)
    mx.random.seed(0)
    model = VMM(model_args)
    rng = np.random.default_rng(0)
    report = doctor_report()
    print(f"mlx {report['versions']['mlx']} on {report['mlx_default_device']}, BLAS: {report['blas']}")
    print(
        f"VMM d_model {model_args.d_model}, {model_args.n_layers} layers, chunk {model_args.chunk_size}, "
        f"{args.slots} slots, median of {args.rounds} steps"
    )
    print(f"{'context':>8} {'whole ms/step':>14} {'cached ms/step':>15} {'ratio':>7}")
    for length in (int(c) for c in args.contexts.split(",")):
        whole, cached = measure(model, length, args.rounds, args.slots, rng)
        print(f"{length:>8} {whole:>14.2f} {cached:>15.2f} {whole / cached:>6.1f}x")


if __name__ == "__main__":
    main()
