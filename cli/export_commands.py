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


@app.command("coreml")
def to_coreml(
    run: Annotated[Path, typer.Option("--run", help="Trained run: its latest checkpoint, encoder and store.")],
    output: Annotated[Path, typer.Option("--out", help="New (or empty) directory for the bundle.")],
) -> None:
    """A Core ML bundle for macOS 15 / iOS 18: encoder, stateful VMM step, concept table, tokenizer, manifest."""
    from meqg_converters.coreml import export_coreml

    from .progress import console

    manifest = export_coreml(run, output, lambda part: console.print(f"converting: {part}"))
    sizes = ", ".join(f"{p.name} {_size(p)}" for p in sorted(output.iterdir()))
    out.print(f"exported {run} to {output} in {manifest['seconds']:.0f} s: {sizes}", soft_wrap=True)


def _size(path: Path) -> str:
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    return f"{size / 2**20:.1f} MiB"
