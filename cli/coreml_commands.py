"""`meqg coreml check|bench BUNDLE`: a Core ML bundle's predictions against PyTorch, and its speed (macOS)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meqg_mlx.errors import MeqgError

from .progress import out

app = typer.Typer(help="Check and time a bundle from `meqg export coreml` (Core ML predicts on macOS only).")
TOLERANCE_COSINE = 0.999  # float16 compute against float32 PyTorch


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="coreml")


@app.command("check")
def check(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory (manifest.json, *.mlpackage).")],
    count: Annotated[int, typer.Option(min=1, max=10_000, help="Texts and steps to compare.")] = 8,
) -> None:
    """Every output of the encoder and the step model (states carried) against the PyTorch twin."""
    from meqg_converters.coreml import check_bundle

    result = check_bundle(bundle, count)
    for name, gap in result["max_gap"].items():
        cosine = result["min_cosine"].get(name)
        shown = "" if cosine is None else f", min cosine {cosine:.5f}"
        out.print(f"{name}: max |Core ML - PyTorch| {gap:.2e}{shown}")
    out.print(f"greedy planner codes equal in {result['same_codes']}/{result['count']} steps")
    worst = min(result["min_cosine"].values())
    if worst < TOLERANCE_COSINE:
        raise MeqgError(f"Core ML departs from PyTorch: cosine {worst:.5f} < {TOLERANCE_COSINE}")


@app.command("bench")
def bench(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory (manifest.json, *.mlpackage).")],
    steps: Annotated[int, typer.Option(min=1, max=100_000, help="Calls timed per compute unit.")] = 100,
) -> None:
    """Median ms per encoder call and per VMM step on CPU only, CPU+GPU and CPU+Neural Engine."""
    from meqg_converters.coreml import bench_bundle

    out.print(f"{'compute units':<14} {'encoder ms':>11} {'vmm step ms':>12}")
    for unit, times in bench_bundle(bundle, steps).items():
        out.print(f"{unit:<14} {times['encoder']:>11.2f} {times['vmm_step']:>12.2f}")
