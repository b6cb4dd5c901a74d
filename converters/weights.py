"""Weight maps between the MLX VMM (its safetensors) and the PyTorch twin, both ways.

The names are the same on both sides; only the depthwise convolution's kernel is laid
out differently (MLX (C, K, 1), PyTorch (C, 1, K)).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from meqg_mlx.config import RUN_KEYS_BEFORE, load_config
from meqg_mlx.errors import MeqgError
from meqg_mlx.runs import CONFIG, WEIGHTS
from meqg_mlx.vmm.model import ModelArgs

from .torch_vmm import VMM


def _is_conv(name: str) -> bool:
    return name.endswith("mixer.conv.weight")


def mlx_to_torch(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MLX VMM weights (name -> tensor) -> the PyTorch twin's state dict."""
    return {k: v.transpose(1, 2).contiguous() if _is_conv(k) else v for k, v in weights.items()}


def torch_to_mlx(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The PyTorch twin's state dict -> weights `meqg_mlx.vmm.model.VMM.load_weights` accepts."""
    return {k: (v.transpose(1, 2) if _is_conv(k) else v).detach().cpu().contiguous() for k, v in state.items()}


def load_vmm(weights_path: str | Path, args: ModelArgs | None = None, device: str | torch.device = "cpu") -> VMM:
    """A PyTorch VMM with the weights of an MLX `model.safetensors`; every tensor must match.

    concept_dim belongs to the store, not the config, so it is read off in_proj's weight.
    """
    try:
        state = mlx_to_torch(load_file(str(weights_path)))
        args = dataclasses.replace(args or ModelArgs(), concept_dim=state["in_proj.weight"].shape[1])
        model = VMM(args)
        model.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, ValueError, KeyError, SafetensorError) as exc:
        raise MeqgError(f"cannot load {weights_path} into the PyTorch VMM: {str(exc).splitlines()[0]}") from exc
    return model.to(device)


def load_checkpoint_vmm(checkpoint_dir: str | Path, device: str | torch.device = "cpu") -> VMM:
    """A PyTorch VMM from a meqg checkpoint directory (its config.yaml and model.safetensors)."""
    checkpoint_dir = Path(checkpoint_dir)
    if not (checkpoint_dir / WEIGHTS).is_file():
        raise MeqgError(f"no {WEIGHTS} in {checkpoint_dir}")
    return load_vmm(checkpoint_dir / WEIGHTS, load_config(checkpoint_dir / CONFIG, RUN_KEYS_BEFORE).vmm, device)


def save_mlx_weights(model: VMM, path: str | Path) -> None:
    """Write the PyTorch twin's weights as an MLX VMM `model.safetensors`."""
    save_file(torch_to_mlx(model.state_dict()), str(path))
