"""Training benchmark: the Null-Stability Gate's overhead, and MLX against the same model in PyTorch.

1. Concept-steps/s (valid next-concept positions trained per second) of the same model
   on the same batches: ungated, gated at every step, and gated on the adaptive
   interval (gate.check_interval); plus peak memory per step (MLX's allocator). The
   overhead is the whole run's, with its range over the blocks the variants took turns in
   (a 2-core VM moved it by +-0.1 between runs).
2. Forward+backward of the VMM in MLX (with meqg's kernels, compiled into one graph as the
   trainer runs it and op by op; and with MEQG_KERNELS=0) and of its PyTorch twin
   (meqg_converters, eager) with the same weights on the same batches: distance + in-batch
   InfoNCE + planner NLL + router balance. On a machine with CUDA, PyTorch runs there and
   MLX on its default device (the CUDA backend when installed).

    python bench/train.py [--store DIR] [--steps 30] [--interval 8] [--passes 20]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import meqg_mlx  # noqa: E402,F401  (sets up BLAS for when mlx is first imported)
import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from meqg_converters.weights import load_vmm  # noqa: E402
from meqg_mlx.backend import doctor_report  # noqa: E402
from meqg_mlx.concepts import ConceptStore  # noqa: E402
from meqg_mlx.config import MeqgConfig, from_dict  # noqa: E402
from meqg_mlx.corpus.sequences import windows  # noqa: E402
from meqg_mlx.kernels import status as kernel_status  # noqa: E402
from meqg_mlx.kernels.softmax import cross_entropy  # noqa: E402
from meqg_mlx.paths import default_store  # noqa: E402
from meqg_mlx.train.trainer import Trainer  # noqa: E402

SETTINGS = {
    "vmm": {
        "d_model": 128,
        "n_layers": 2,
        "d_state": 32,
        "head_dim": 32,
        "chunk_size": 32,
        "n_experts": 4,
        "d_ff": 256,
        "rvq_levels": 2,
        "rvq_codes": 64,
    },
    "train": {"batch_size": 16, "seq_len": 32, "rvq_fit_steps": 5, "learning_rate": 1e-3},
}
BLOCKS = 4  # each engine's passes, each variant's steps, come in this many blocks, taking turns


def gate_overhead(store: ConceptStore, variants: dict[str, tuple[bool, int]], steps: int, warmup: int = 3) -> dict:
    """Concept-steps/s and peak memory of each (gate, check_interval) variant. The variants take
    turns in BLOCKS blocks of consecutive steps, as a run takes them, each block after an untimed
    step: drifts of the machine's speed hit them alike, and no variant is timed while another's
    BLAS threads still spin or its weights fill the caches (switching every step made both
    1-10% slower here, and their ratio 0-0.05 higher)."""
    trainers = {}
    for name, (gate, interval) in variants.items():
        config = from_dict(MeqgConfig, SETTINGS)
        config.train.gate, config.gate.check_interval = gate, interval
        config.train.steps = steps + warmup + BLOCKS
        trainers[name] = Trainer(store, config)
        for _ in range(warmup):
            trainers[name].step()
    totals = {name: {"tokens": 0, "seconds": 0.0, "checks": 0, "peak": 0, "blocks": []} for name in variants}
    for block in range(BLOCKS):
        for name, trainer in trainers.items():
            trainer.step()
            total = totals[name]
            tokens, seconds = total["tokens"], total["seconds"]
            for _ in range(steps * (block + 1) // BLOCKS - steps * block // BLOCKS):
                mx.reset_peak_memory()
                started = time.perf_counter()
                report = trainer.step()
                total["seconds"] += time.perf_counter() - started
                total["tokens"] += report.tokens
                total["checks"] += report.gate is not None
                total["peak"] = max(total["peak"], mx.get_peak_memory())
            total["blocks"].append((total["tokens"] - tokens) / (total["seconds"] - seconds))
    return {
        name: {
            "concept_steps_s": t["tokens"] / t["seconds"],
            "step_ms": 1e3 * t["seconds"] / steps,
            "checks": t["checks"],
            "peak_mb": t["peak"] / 2**20,
            "block_concept_steps_s": t["blocks"],
        }
        for name, t in totals.items()
    }


def mlx_loss(model, inputs, targets, codes, temperature: float = 0.1):
    """The loss of both engines; the cross-entropy is meqg's (a kernel, as in the trainer's objective)."""
    out = model(inputs)
    predicted, target = out.next_vector.reshape(-1, inputs.shape[-1]), targets.reshape(-1, inputs.shape[-1])
    logits = model.planner(out.hidden.reshape(-1, out.hidden.shape[-1]), codes)
    contrastive = cross_entropy(predicted @ target.T / temperature, mx.arange(target.shape[0]))
    return (
        (1 - (predicted * target).sum(-1)).mean()
        + contrastive.mean()
        + cross_entropy(logits, codes).mean()
        + 0.01 * sum(s.balance_loss for s in out.router)
    )


def torch_loss(model, inputs, targets, codes, temperature: float = 0.1):
    out = model(inputs)
    predicted, target = out.next_vector.flatten(0, 1), targets.flatten(0, 1)
    logits = model.planner(out.hidden.flatten(0, 1), codes)
    contrastive = F.cross_entropy(
        predicted @ target.T / temperature, torch.arange(target.shape[0], device=target.device)
    )
    return (
        (1 - (predicted * target).sum(-1)).mean()
        + contrastive
        + F.cross_entropy(logits.flatten(0, 1), codes.flatten())
        + 0.01 * sum(s.balance_loss for s in out.router)
    )


def versus_torch(store: ConceptStore, passes: int, warmup: int = 3) -> dict:
    """Seconds per forward+backward of the MLX VMM and its PyTorch twin, same weights and batches."""
    config = from_dict(MeqgConfig, SETTINGS)
    trainer = Trainer(store, config)
    tc = config.train
    batches = [
        trainer.table.rows(windows(trainer.split.train_docs, tc.seq_len, trainer.rng, tc.batch_size))[:2]
        for _ in range(passes + warmup)
    ]
    batches = [(trainer.table.matrix[i], trainer.table.matrix[t], trainer.codes[t.reshape(-1)]) for i, t in batches]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        trainer.model.save_weights(str(Path(tmp) / "model.safetensors"))
        twin = load_vmm(Path(tmp) / "model.safetensors", trainer.args, device)
    grad_fn = nn.value_and_grad(trainer.model, mlx_loss)

    def op_by_op(*batch):
        return grad_fn(trainer.model, *batch)

    state = [trainer.model.state]  # compiled as the trainer compiles its step (Trainer.compiled)
    compiled = mx.compile(op_by_op, inputs=state, outputs=state)

    def run_mlx(batch, fn=op_by_op):
        loss, grads = fn(*batch)
        mx.eval(loss, grads)
        return float(loss)

    def run_torch(batch):
        twin.zero_grad(set_to_none=True)
        inputs, targets, codes = (torch.from_numpy(np.array(v)).to(device) for v in batch)
        loss = torch_loss(twin, inputs, targets, codes.long())
        loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()
        return loss.item()

    def without_kernels(batch):
        previous = os.environ.get("MEQG_KERNELS")
        os.environ["MEQG_KERNELS"] = "0"
        try:
            return run_mlx(batch)
        finally:
            os.environ.pop("MEQG_KERNELS") if previous is None else os.environ.update(MEQG_KERNELS=previous)

    engines = {
        "mlx_compiled": (lambda batch: run_mlx(batch, compiled), mx.reset_peak_memory, mx.get_peak_memory),
        "mlx": (run_mlx, mx.reset_peak_memory, mx.get_peak_memory),
        "mlx_ops": (without_kernels, mx.reset_peak_memory, mx.get_peak_memory),
        "torch": (run_torch, torch.cuda.reset_peak_memory_stats, torch.cuda.max_memory_allocated),
    }
    # Engines run in alternating blocks, each block after an untimed pass: the drift of a busy
    # machine hits all alike, and no engine is timed while the other's threads still spin
    # (OpenMP and OpenBLAS workers busy-wait after a call: interleaving single passes made a
    # lone MLX Linear 2.9x slower here).
    timings = dict.fromkeys(engines, 0.0)
    losses, peaks = {name: [] for name in engines}, dict.fromkeys(engines, 0.0)
    blocks = [batches[warmup:][start::BLOCKS] for start in range(BLOCKS)]
    for block in blocks:
        for name, (run, reset, peak) in engines.items():
            for batch in batches[:warmup]:
                run(batch)
            measured_memory = name != "torch" or device == "cuda"  # PyTorch's CPU allocator keeps no peak
            if measured_memory:
                reset()
            started = time.perf_counter()
            losses[name] += [run(batch) for batch in block]
            timings[name] += (time.perf_counter() - started) / passes
            peaks[name] = max(peaks[name], peak() / 2**20) if measured_memory else None
    return {
        "devices": f"mlx {mx.default_device()}, torch {device}",
        "mlx_compiled_s": timings["mlx_compiled"],
        "mlx_s": timings["mlx"],
        "mlx_ops_s": timings["mlx_ops"],
        "torch_s": timings["torch"],
        "tokens": config.train.batch_size * config.train.seq_len,
        "loss_gap": max(abs(a - b) for a, b in zip(losses["mlx"], losses["torch"])),
        "mlx_compiled_peak_mb": peaks["mlx_compiled"],
        "mlx_peak_mb": peaks["mlx"],
        "mlx_ops_peak_mb": peaks["mlx_ops"],
        "torch_peak_mb": peaks["torch"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=str(default_store()))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--interval", type=int, default=8)
    parser.add_argument("--passes", type=int, default=20)
    args = parser.parse_args()
    report = doctor_report()
    print(f"mlx {report['versions']['mlx']} on {report['mlx_default_device']}, BLAS: {report['blas']}")
    store = ConceptStore.open(args.store)
    runs = gate_overhead(
        store,
        {
            "ungated": (False, 1),
            "gated, every step": (True, 1),
            f"gated, adaptive interval <= {args.interval}": (True, args.interval),
        },
        args.steps,
    )
    base = runs["ungated"]
    print(
        f"{'':<34}{'concept-steps/s':>16}{'ms/step':>10}{'gate checks':>13}{'peak MB':>10}{'overhead':>10}"
        f"  {'blocks':>11}"
    )
    for name, r in runs.items():
        blocks = [b / v for b, v in zip(base["block_concept_steps_s"], r["block_concept_steps_s"])]
        spread = f"{min(blocks):.2f}-{max(blocks):.2f}x" if r is not base else ""
        print(
            f"{name:<34}{r['concept_steps_s']:>16.0f}{r['step_ms']:>10.1f}{r['checks']:>13}"
            f"{r['peak_mb']:>10.0f}{base['concept_steps_s'] / r['concept_steps_s']:>9.2f}x  {spread:>11}"
        )
    peer = versus_torch(store, args.passes)
    torch_peak = "n/a (CPU)" if peer["torch_peak_mb"] is None else f"{peer['torch_peak_mb']:.0f} MB"
    print(
        f"\nforward+backward, same weights and batches ({peer['devices']}; max loss difference {peer['loss_gap']:.1e}):"
    )
    active = [k.name for k in kernel_status() if k.backend is not None]
    print(f"  meqg kernels on: {', '.join(active) or 'none'}")
    rows = (
        ("MLX, kernels, compiled (trainer)", "mlx_compiled"),
        ("MLX, kernels, op by op", "mlx"),
        ("MLX, MEQG_KERNELS=0, op by op", "mlx_ops"),
    )
    for label, key in rows:
        print(
            f"  {label:<34}{1e3 * peer[key + '_s']:8.1f} ms  {peer['tokens'] / peer[key + '_s']:8.0f} concepts/s"
            f"  peak {peer[key + '_peak_mb']:.0f} MB"
        )
    print(
        f"  {'PyTorch':<34}{1e3 * peer['torch_s']:8.1f} ms  {peer['tokens'] / peer['torch_s']:8.0f} concepts/s"
        f"  peak {torch_peak}"
    )
    print(
        f"  MLX speed / PyTorch speed: {peer['torch_s'] / peer['mlx_compiled_s']:.2f}x compiled as the trainer, "
        f"{peer['torch_s'] / peer['mlx_s']:.2f}x op by op, {peer['torch_s'] / peer['mlx_ops_s']:.2f}x without kernels"
    )


if __name__ == "__main__":
    main()
