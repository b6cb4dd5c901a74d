"""`meqg` entry point: builds the typer app and turns library errors into one-line exits."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .progress import console, out

app = typer.Typer(help="meqg: a local workbench for concept-space reasoning models.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Build concept stores from corpora.", no_args_is_help=True)
app.add_typer(data_app, name="data")

from . import store_commands, train_commands  # noqa: E402

app.add_typer(store_commands.app, name="store")
train_commands.register(app)

StoreOption = typer.Option(None, "--store", help="Concept store directory [default: $MEQG_HOME/stores/stdlib]")


@app.command()
def doctor(brief: bool = typer.Option(False, help="One line: backend, BLAS and matmul speed."),
           as_json: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """Backend, BLAS in use, devices, versions, and a measured MLX matmul GFLOP/s."""
    from meqg_mlx.backend import doctor_report

    report = doctor_report()
    if as_json:
        print(json.dumps(report, indent=2))
    elif brief:
        print(f"meqg doctor: mlx {report['versions']['mlx']} on {report['mlx_default_device']}, "
              f"BLAS: {report['blas']}, 1024^3 matmul {report['matmul_1024_gflops']} GFLOP/s")
    else:
        for key, value in report.items():
            if isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            elif isinstance(value, list):
                value = ", ".join(value) or "-"
            print(f"{key:>20}: {value}")


@data_app.command("build")
def data_build(
    store: Optional[Path] = StoreOption,
    source: list[str] = typer.Option(..., "--source", help="stdlib[:MOD,..] | pydoc | wordnet[:DIR] | PATH (repeatable)"),
    limit: Optional[int] = typer.Option(None, help="At most N new concepts per source."),
    config: Optional[Path] = typer.Option(None, help="YAML config (store section used here)."),
    text_column: str = typer.Option("text", help="Text column of .jsonl/.parquet sources."),
) -> None:
    """Embed concepts from sources into a LanceDB store; appends only concepts not already stored."""
    from meqg_mlx.paths import default_store

    build(store or default_store(), source, limit, config, text_column)


def build(store: Path, source: list[str], limit: Optional[int], config: Optional[Path], text_column: str) -> None:
    from meqg_mlx.concepts import build_store
    from meqg_mlx.config import load_config
    from meqg_mlx.encoder import default_embedder

    from .progress import progress_bar

    settings = load_config(config).store
    with progress_bar() as update:
        update("loading encoder", 0, 1)
        embedder = default_embedder(settings.max_tokens)
        update("loading encoder", 1, 1)
        summary = build_store(store, source, embedder, settings, limit, update, text_column)
    out.print(
        f"[bold]{store}[/]: +{summary.added} concepts ({summary.duplicates} duplicates skipped"
        + f"), {summary.total_concepts} in store, {summary.relations} relations, {summary.domains} domains\n"
        f"{summary.seconds:.1f} s: sources {summary.source_seconds:.1f} s, embedding {summary.embed_seconds:.1f} s"
        f" ({summary.added / max(summary.embed_seconds, 1e-9):.0f}/s), writing {summary.write_seconds:.1f} s, "
        f"domains {summary.domain_seconds:.1f} s, compaction+index {summary.index_seconds:.1f} s; "
        f"search: {summary.index}")


@app.command()
def encode(texts: list[str] = typer.Argument(..., help="Texts to embed.")) -> None:
    """Print the default encoder's unit vectors as JSON: {model, dim, vectors}."""
    from meqg_mlx.encoder import default_embedder

    embedder = default_embedder()
    vectors = embedder.encode(list(texts))
    print(json.dumps({"model": embedder.name, "dim": embedder.dim,
                      "vectors": [[round(float(x), 7) for x in row] for row in vectors]}))


@app.command()
def demo(store: Optional[Path] = StoreOption) -> None:
    """The main job on the embedded default: build the stdlib store if missing, then search it."""
    from meqg_mlx.concepts import ConceptStore
    from meqg_mlx.concepts.search import search_subjects
    from meqg_mlx.encoder import default_embedder
    from meqg_mlx.paths import default_store

    store = store or default_store()
    if not (store / "meqg_store.json").exists():
        console.print(f"[bold]meqg demo[/]: building the default concept store from this Python's stdlib at {store}")
        build(store, ["stdlib"], None, None, "text")
    concepts = ConceptStore.open(store)
    embedder = default_embedder()
    stats = concepts.stats()
    out.print(f"\n[bold]{stats['concepts']}[/] concepts, {stats['relations']} relations, "
                  f"{len(stats['domains'])} domains ({stats['origin_model']}, {stats['dim']}-d)")
    for query in ("sort a list in place", "read a file line by line", "parse JSON from a string",
                  "join directory and file names into one path"):
        store_commands.print_results(query, search_subjects(concepts, embedder.encode([query])[0], 3))
    out.print("\nnext: [bold]meqg store stats[/], [bold]meqg store search \"...\"[/], "
                  "[bold]meqg store show ID[/], [bold]meqg data build --source wordnet[/]")


def run() -> None:
    """Console-script entry: one line on stderr and exit 2 for any meqg error."""
    from meqg_mlx.errors import MeqgError

    try:
        app()
    except MeqgError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
