"""Distributed training benchmark: the PyTorch twin on 1 and N processes, and the MLX trainer against the twin's.

1. `meqg_converters.train` under torchrun with --nproc-per-node 1 and N (gloo on CPUs, NCCL
   with a GPU per process) on the same config, store and global batch: steps/s from rank 0's
   telemetry timestamps (whole steps: broadcasts, all-reduces, telemetry) and the median
   concept-steps/s of a step's compute, after --warmup steps.
2. One process: the MLX `Trainer` and the `TorchTrainer` on the same config, seed and
   batches, steps interleaved so the machine's drifts hit both alike. With CUDA the twin runs
   there and MLX on its default device (its CUDA backend when installed).

    python bench/distributed.py [--store DIR] [--steps 40] [--warmup 5] [--nproc 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import meqg_mlx  # noqa: E402,F401  (sets up BLAS for when mlx is first imported)
import mlx.core as mx  # noqa: E402
import torch  # noqa: E402
from meqg_converters.train import TorchTrainer  # noqa: E402
from meqg_mlx.backend import doctor_report  # noqa: E402
from meqg_mlx.concepts import ConceptStore  # noqa: E402
from meqg_mlx.config import MeqgConfig, from_dict, save_config  # noqa: E402
from meqg_mlx.paths import default_store  # noqa: E402
from meqg_mlx.runs import RunDir  # noqa: E402
from meqg_mlx.telemetry import read_telemetry  # noqa: E402
from meqg_mlx.train.trainer import Trainer  # noqa: E402

from train import SETTINGS  # noqa: E402  (bench/train.py's model and batch)


def bench_config(steps: int) -> MeqgConfig:
    config = from_dict(MeqgConfig, SETTINGS)
    config.train.steps, config.train.eval_every, config.train.checkpoint_every = steps, 0, steps
    return config


def torchrun(store: Path, config_file: Path, run: Path, nproc: int) -> dict:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    command += ["-m", "meqg_converters.train", "--", "--store", str(store), "--run", str(run)]
    done = subprocess.run(command + ["--config", str(config_file)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"torchrun --nproc-per-node {nproc} failed: {done.stderr.strip().splitlines()[-1]}")
    return {"steps": [r for r in read_telemetry(RunDir(run).telemetry_path)[0] if r["event"] == "step"]}


def processes(store: Path, steps: int, warmup: int, nproc: int) -> dict[int, dict]:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        config_file = Path(tmp) / "config.yaml"
        save_config(bench_config(steps + warmup), config_file)
        for n in (1, nproc):
            records = torchrun(store, config_file, Path(tmp) / f"run{n}", n)["steps"][warmup:]
            gaps = [b["ts"] - a["ts"] for a, b in zip(records, records[1:])]
            results[n] = {
                "steps_s": 1 / statistics.mean(gaps),
                "concept_steps_s": statistics.median(r["throughput"] for r in records),
                "final_loss": records[-1]["loss"],
            }
    return results


def engines(store: ConceptStore, steps: int, warmup: int) -> dict[str, dict]:
    config = bench_config(steps + warmup)
    trainers = {"mlx": Trainer(store, config), "torch": TorchTrainer(store, config)}
    totals = {name: {"tokens": 0, "seconds": 0.0, "losses": []} for name in trainers}
    for index in range(steps + warmup):
        for name, trainer in trainers.items():
            started = time.perf_counter()
            report = trainer.step()
            if name == "torch" and trainer.device.type == "cuda":
                torch.cuda.synchronize()
            if index >= warmup:
                totals[name]["seconds"] += time.perf_counter() - started
                totals[name]["tokens"] += report.tokens
                totals[name]["losses"].append(report.terms["distance"] + report.terms["contrastive"])
    return {
        name: {
            "concept_steps_s": t["tokens"] / t["seconds"],
            "step_ms": 1e3 * t["seconds"] / steps,
            "device": str(mx.default_device()) if name == "mlx" else str(trainers["torch"].device),
            "mean_loss": statistics.mean(t["losses"]),
        }
        for name, t in totals.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=str(default_store()))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--nproc", type=int, default=2)
    args = parser.parse_args()
    report = doctor_report()
    print(f"mlx {report['versions']['mlx']} on {report['mlx_default_device']}, torch {torch.__version__}")
    print(f"BLAS: {report['blas']}; {os.cpu_count()} CPUs, CUDA: {torch.cuda.is_available()}")
    store = ConceptStore.open(args.store)
    vmm, train = SETTINGS["vmm"], SETTINGS["train"]
    print(
        f"store {store.uri} ({store.count()} concepts); VMM d_model {vmm['d_model']}, {vmm['n_layers']} layers, "
        f"batch {train['batch_size']} x {train['seq_len']}; {args.steps} steps after {args.warmup}"
    )

    print("\n1. torchrun + DDP (gloo on CPU, NCCL on CUDA): whole steps of rank 0")
    measured = processes(store.uri, args.steps, args.warmup, args.nproc)
    print(f"{'processes':>10} {'steps/s':>9} {'concept-steps/s':>16} {'final loss':>11}")
    for n, r in measured.items():
        print(f"{n:>10} {r['steps_s']:>9.2f} {r['concept_steps_s']:>16.0f} {r['final_loss']:>11.4f}")
    one, many = measured[1], measured[args.nproc]
    print(f"{args.nproc} vs 1 process: {many['steps_s'] / one['steps_s']:.2f}x steps/s (same global batch)")

    print("\n2. one process, the same batches: MLX Trainer vs TorchTrainer (interleaved)")
    compared = engines(store, args.steps, args.warmup)
    print(f"{'engine':>8} {'device':>16} {'step ms':>9} {'concept-steps/s':>16} {'mean loss':>10}")
    for name, r in compared.items():
        print(f"{name:>8} {r['device']:>16} {r['step_ms']:>9.1f} {r['concept_steps_s']:>16.0f} {r['mean_loss']:>10.4f}")
    ratio = compared["torch"]["concept_steps_s"] / compared["mlx"]["concept_steps_s"]
    print(f"twin vs MLX: {ratio:.2f}x concept-steps/s")


if __name__ == "__main__":
    main()
