"""`meqg export`: a trained run in another framework's format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .progress import out

app = typer.Typer(help="Export a trained run for another framework.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="export")


@app.command("torch")
def to_torch(
    run: Annotated[Path, typer.Option("--run", help="Trained run: its latest checkpoint is exported.")],
    output: Annotated[Path, typer.Option("--out", help="New (or empty) directory for the export.")],
) -> None:
    """A directory PyTorch loads without meqg or MLX: model.safetensors, config.json, modeling_meqg.py."""
    from meqg_converters.export import export_torch

    path = export_torch(run, output)
    out.print(f"exported {run} to {path}: load it with modeling_meqg.load_pretrained (see {path / 'README.md'})")
