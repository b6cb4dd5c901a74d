"""A VMM with a checkpoint's weights, for inference: episodes, `meqg eval`, the exporters (through
`meqg_mlx.trained.TrainedRun`). Resuming training restores more (`train/checkpoint.py`)."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx

from ..errors import MeqgError
from ..runs import WEIGHTS
from .model import VMM, ModelArgs


def load_model(checkpoint: str | Path, args: ModelArgs) -> VMM:
    model = VMM(args)
    try:
        model.load_weights(str(Path(checkpoint) / WEIGHTS), strict=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise MeqgError(f"corrupt checkpoint {checkpoint}: {str(exc).splitlines()[0]}") from exc
    mx.eval(model.parameters())
    return model
