"""Checkpoints that resume exactly: weights (incl. RVQ codebooks), optimizer state,
config, RNG state and trainer counters, written to a temp dir and renamed into place."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from ..config import save_config
from ..errors import MeqgError

FORMAT = 1


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:07d}"


def save_checkpoint(run_dir: str | Path, trainer) -> Path:
    target = checkpoint_path(run_dir, trainer.state.step)
    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ckpt-", dir=root))
    trainer.model.save_weights(str(tmp / "model.safetensors"))
    mx.save_safetensors(str(tmp / "optimizer.safetensors"), dict(tree_flatten(trainer.optimizer.state)))
    save_config(trainer.config, tmp / "config.yaml")
    state = {"format": FORMAT, "step": trainer.state.step, "accepted": trainer.state.accepted,
             "rng": trainer.rng.bit_generator.state, "next_code_id": trainer.model.rvq.next_code_id,
             "trust_radius": trainer.gate.trust_radius if trainer.gate else None, "store": str(trainer.store.path),
             "recovery": trainer.recovery.state(), "kappa": trainer.kappa,
             "gate_schedule": [trainer._gate_gap, trainer._next_check], "stable": trainer.recovery.regime != "breakdown"}
    (tmp / "state.json").write_text(json.dumps(state))
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    latest = root / "latest.tmp"
    latest.write_text(target.name)
    os.replace(latest, root / "latest")
    return target


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    pointer = Path(run_dir) / "checkpoints" / "latest"
    return pointer.parent / pointer.read_text().strip() if pointer.is_file() else None


def last_stable_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint written outside the breakdown regime."""
    for path in sorted((Path(run_dir) / "checkpoints").glob("step-*"), reverse=True):
        try:
            if json.loads((path / "state.json").read_text()).get("stable"):
                return path
        except (OSError, ValueError):
            continue
    return None


def load_checkpoint(path: str | Path, trainer, weights_only: bool = False) -> None:
    """Restore `trainer` (built with the same config and store) to the checkpoint's exact state.

    `weights_only` (a recovery revert) restores weights and optimizer state but keeps
    the step count, data RNG and recovery policy moving forward.
    """
    path = Path(path)
    try:
        state = json.loads((path / "state.json").read_text())
        if state.get("format") != FORMAT:
            raise ValueError(f"format {state.get('format')}")
        trainer.model.load_weights(str(path / "model.safetensors"), strict=True)
        optimizer_state = mx.load(str(path / "optimizer.safetensors"))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise MeqgError(f"corrupt checkpoint {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    trainer.optimizer.state = tree_unflatten(list(optimizer_state.items()))
    if weights_only:
        return
    trainer.rng.bit_generator.state = state["rng"]
    trainer.recovery.load_state(state["recovery"])
    trainer.kappa = state["kappa"]
    trainer._gate_gap, trainer._next_check = state["gate_schedule"]
    trainer.model.rvq.next_code_id = state["next_code_id"]
    if trainer.gate and state["trust_radius"] is not None:
        trainer.gate.trust_radius = state["trust_radius"]
    trainer.state.step, trainer.state.accepted = state["step"], state["accepted"]
    trainer.refresh_codes()
