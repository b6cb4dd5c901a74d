"""Training benchmark: the Null-Stability Gate's overhead, measured against ungated AdamW in the same run.

Concept-steps/s (valid next-concept positions trained per second) of the same model
on the same batches: ungated, gated at every step, and gated on the adaptive
interval (gate.check_interval); plus peak memory per step (MLX's allocator).

    python bench/train.py [--store DIR] [--steps 30] [--interval 8]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import meqg_mlx  # noqa: E402,F401  (configures BLAS before mlx is imported)
import mlx.core as mx  # noqa: E402
from meqg_mlx.backend import doctor_report  # noqa: E402
from meqg_mlx.concepts import ConceptStore  # noqa: E402
from meqg_mlx.config import MeqgConfig, from_dict  # noqa: E402
from meqg_mlx.paths import default_store  # noqa: E402
from meqg_mlx.train.trainer import Trainer  # noqa: E402

SETTINGS = {
    "vmm": {"d_model": 128, "n_layers": 2, "d_state": 32, "head_dim": 32, "chunk_size": 32, "n_experts": 4,
            "d_ff": 256, "rvq_levels": 2, "rvq_codes": 64},
    "train": {"batch_size": 16, "seq_len": 32, "rvq_fit_steps": 5, "learning_rate": 1e-3},
}


def measure(store: ConceptStore, gate: bool, interval: int, steps: int, warmup: int = 3) -> dict:
    config = from_dict(MeqgConfig, SETTINGS)
    config.train.gate, config.train.steps = gate, steps + warmup
    config.gate.check_interval = interval
    trainer = Trainer(store, config)
    for _ in range(warmup):
        trainer.step()
    mx.reset_peak_memory()
    tokens, started, checks = 0, time.perf_counter(), 0
    for _ in range(steps):
        report = trainer.step()
        tokens += report.tokens
        checks += report.gate is not None
    seconds = time.perf_counter() - started
    return {"concept_steps_s": tokens / seconds, "step_ms": 1e3 * seconds / steps, "checks": checks,
            "peak_mb": mx.get_peak_memory() / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=str(default_store()))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--interval", type=int, default=8)
    args = parser.parse_args()
    report = doctor_report()
    print(f"mlx {report['versions']['mlx']} on {report['mlx_default_device']}, BLAS: {report['blas']}")
    store = ConceptStore.open(args.store)
    runs = {"ungated": measure(store, False, 1, args.steps),
            "gated, every step": measure(store, True, 1, args.steps),
            f"gated, adaptive interval <= {args.interval}": measure(store, True, args.interval, args.steps)}
    base = runs["ungated"]["concept_steps_s"]
    print(f"{'':<34}{'concept-steps/s':>16}{'ms/step':>10}{'gate checks':>13}{'peak MB':>10}{'overhead':>10}")
    for name, r in runs.items():
        print(f"{name:<34}{r['concept_steps_s']:>16.0f}{r['step_ms']:>10.1f}{r['checks']:>13}"
              f"{r['peak_mb']:>10.0f}{base / r['concept_steps_s']:>9.2f}x")


if __name__ == "__main__":
    main()
