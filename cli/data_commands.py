"""`meqg data build`: concept stores from corpora."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import StoreOption
from .progress import out

SKIPS_SHOWN = 10  # skipped records a build summary lists one by one


class Engine(str, Enum):
    inprocess = "inprocess"
    ray = "ray"


app = typer.Typer(help="Build concept stores from corpora.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="data")


@app.command("build")
def data_build(
    source: Annotated[
        list[str],
        typer.Option("--source", help="stdlib[:MOD,..] | pydoc | wordnet[:DIR][@WORD,..] | PATH (repeatable)"),
    ],
    store: StoreOption = None,
    limit: Annotated[Optional[int], typer.Option(help="At most N new concepts per source.")] = None,
    config_file: Annotated[
        Optional[Path], typer.Option("--config", help="YAML config (store section used here).")
    ] = None,
    text_column: Annotated[str, typer.Option(help="Text column of .jsonl/.parquet sources.")] = "text",
    engine: Annotated[
        Engine, typer.Option(help="inprocess: embed here; ray: parallel Ray workers, each committing whole batches.")
    ] = Engine.inprocess,
    address: Annotated[
        Optional[str], typer.Option(help="--engine ray: a running cluster (auto, ray://HOST:10001) [default: local].")
    ] = None,
    workers: Annotated[
        Optional[int], typer.Option(min=1, help="--engine ray: writer processes [default: the cluster's CPUs].")
    ] = None,
) -> None:
    """Embed concepts from sources into a LanceDB store; appends only concepts not already stored."""
    from meqg_mlx.paths import default_store

    if engine is Engine.inprocess and (address is not None or workers is not None):
        raise typer.BadParameter("--address and --workers need --engine ray")
    ray = (address, workers) if engine is Engine.ray else None
    build(store or default_store(), source, limit, config_file, text_column, ray)


def build(
    store: str | Path,
    source: list[str],
    limit: Optional[int],
    config_file: Optional[Path],
    text_column: str,
    ray: tuple[Optional[str], Optional[int]] | None = None,
) -> None:
    """The build `meqg data build` and `meqg demo` run; `ray` is (address, workers) for --engine ray."""
    from functools import partial

    from meqg_mlx.concepts import build_store
    from meqg_mlx.concepts.ray_build import RayIngest
    from meqg_mlx.config import load_config
    from meqg_mlx.encoder import embedder_from_config

    from .progress import progress_bar

    config = load_config(config_file)
    with progress_bar() as update:
        update("loading encoder", 0, 1)
        embedder = embedder_from_config(config)
        update("loading encoder", 1, 1)
        ingest = RayIngest(partial(embedder_from_config, config), *ray) if ray is not None else None
        summary = build_store(
            store, source, embedder, config.store, limit, update, text_column, on_wait=out.print, engine=ingest
        )
    out.print(
        f"[bold]{store}[/]: +{summary.added} concepts ({summary.duplicates} duplicates skipped"
        + f"), {summary.total_concepts} in store, {summary.relations} relations, {summary.domains} domains\n"
        f"{summary.seconds:.1f} s: sources {summary.source_seconds:.1f} s, embedding {summary.embed_seconds:.1f} s"
        f" ({summary.added / max(summary.embed_seconds, 1e-9):.0f}/s), writing {summary.write_seconds:.1f} s, "
        f"domains {summary.domain_seconds:.1f} s, compaction+index {summary.index_seconds:.1f} s; "
        f"search: {summary.index}"
    )
    if summary.skipped:
        more = len(summary.skipped) - SKIPS_SHOWN
        out.print(f"[yellow]skipped {len(summary.skipped)} unusable records or files:[/]")
        for reason in summary.skipped[:SKIPS_SHOWN]:
            out.print(f"  {reason}", soft_wrap=True, markup=False)
        if more > 0:
            out.print(f"  ... and {more} more")
