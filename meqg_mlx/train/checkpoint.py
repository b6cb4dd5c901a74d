"""Checkpoints that resume exactly: weights (incl. RVQ codebooks), optimizer state,
config, RNG state and trainer counters, written to a temp dir and renamed into place."""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from ..atomic import replaced_dir
from ..config import save_config
from ..errors import MeqgError
from ..runs import CONFIG, OPTIMIZER, STATE, WEIGHTS, RunDir

FORMAT = 1
OPTIONAL_STATE = {"forwards"}  # added after format 1 was first written; older checkpoints lack it


def save_checkpoint(run: RunDir | str | Path, trainer) -> Path:
    run = RunDir(run)
    target = run.checkpoint(trainer.state.step)
    with replaced_dir(target) as tmp:
        trainer.model.save_weights(str(tmp / WEIGHTS))
        mx.save_safetensors(str(tmp / OPTIMIZER), dict(tree_flatten(trainer.optimizer.state)))
        save_config(trainer.config, tmp / CONFIG)
        state = {"format": FORMAT, "store": trainer.store.uri, **trainer.state_dict()}
        (tmp / STATE).write_text(json.dumps(state))
    run.point_latest(target)
    return target


def last_stable_checkpoint(run: RunDir) -> Path | None:
    """The newest checkpoint written outside the breakdown regime."""
    for path in run.checkpoint_dirs():
        try:
            if json.loads((path / STATE).read_text()).get("stable"):
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
        state = json.loads((path / STATE).read_text())
        if state.get("format") != FORMAT:
            raise ValueError(f"format {state.get('format')}")
        trainer.model.load_weights(str(path / WEIGHTS), strict=True)
        optimizer_state = mx.load(str(path / OPTIMIZER))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise MeqgError(
            f"corrupt checkpoint {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc
    missing = sorted(set(trainer.state_dict()) - set(state) - OPTIONAL_STATE)
    if missing:
        raise MeqgError(f"corrupt checkpoint {path}: {STATE} lacks {', '.join(missing)}")
    trainer.optimizer.state = tree_unflatten(list(optimizer_state.items()))
    if not weights_only:
        try:
            trainer.load_state_dict(state)
        except (KeyError, TypeError, ValueError) as exc:
            raise MeqgError(
                f"corrupt checkpoint {path}: {STATE} has a bad value ({type(exc).__name__}: {exc})"
            ) from None
        trainer.refresh_codes()  # the planner's targets under the codebooks just loaded
