"""`meqg` entry point: builds the typer app and turns library errors into one-line exits."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from meqg_mlx.errors import MeqgError

from .progress import console, out

app = typer.Typer(
    help="meqg: a local workbench for concept-space reasoning models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Build concept stores from corpora.", no_args_is_help=True)
app.add_typer(data_app, name="data")

from . import (  # noqa: E402
    decode_commands,
    episode_commands,
    inverter_commands,
    monitor_commands,
    serve_commands,
    store_commands,
    train_commands,
)

app.add_typer(store_commands.app, name="store")
app.add_typer(inverter_commands.app, name="inverter")
train_commands.register(app)
monitor_commands.register(app)
decode_commands.register(app)
episode_commands.register(app)
serve_commands.register(app)

StoreOption = typer.Option(None, "--store", help="Concept store directory [default: $MEQG_HOME/stores/stdlib]")


@app.command()
def doctor(
    brief: bool = typer.Option(False, help="One line: backend, BLAS and matmul speed."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Backend, BLAS in use, devices, versions, and a measured MLX matmul GFLOP/s."""
    from meqg_mlx.backend import doctor_report
    from meqg_mlx.encoder import choose_backend

    report = doctor_report()
    backend, why = choose_backend()
    report["encoder_backend"] = f"auto -> {backend}: {why}"
    if as_json:
        print(json.dumps(report, indent=2))
    elif brief:
        print(
            f"meqg doctor: mlx {report['versions']['mlx']} on {report['mlx_default_device']}, "
            f"BLAS: {report['blas']}, 1024^3 matmul {report['matmul_1024_gflops']} GFLOP/s, encoder: {backend}"
        )
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
    source: list[str] = typer.Option(
        ..., "--source", help="stdlib[:MOD,..] | pydoc | wordnet[:DIR] | PATH (repeatable)"
    ),
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
    from meqg_mlx.encoder import embedder_from_config

    from .progress import progress_bar

    loaded = load_config(config)
    settings = loaded.store
    with progress_bar() as update:
        update("loading encoder", 0, 1)
        embedder = embedder_from_config(loaded)
        update("loading encoder", 1, 1)
        summary = build_store(store, source, embedder, settings, limit, update, text_column)
    out.print(
        f"[bold]{store}[/]: +{summary.added} concepts ({summary.duplicates} duplicates skipped"
        + f"), {summary.total_concepts} in store, {summary.relations} relations, {summary.domains} domains\n"
        f"{summary.seconds:.1f} s: sources {summary.source_seconds:.1f} s, embedding {summary.embed_seconds:.1f} s"
        f" ({summary.added / max(summary.embed_seconds, 1e-9):.0f}/s), writing {summary.write_seconds:.1f} s, "
        f"domains {summary.domain_seconds:.1f} s, compaction+index {summary.index_seconds:.1f} s; "
        f"search: {summary.index}"
    )


@app.command()
def encode(
    texts: list[str] = typer.Argument(..., help="Texts to embed."),
    backend: str = typer.Option(
        "auto", help="auto (the faster here) | mlx (meqg's port) | torch (sentence-transformers)."
    ),
    model: Optional[Path] = typer.Option(
        None, help="A local sentence-transformers directory [default: bundled all-MiniLM-L6-v2]."
    ),
    dtype: str = typer.Option("float32", help="float32 | float16 | bfloat16 (mlx)."),
    output: str = typer.Option(
        "sentence",
        help="sentence (the model's own vector) | mean (unnormalised mean-pooled states, for GTR inverters; mlx).",
    ),
    max_tokens: int = typer.Option(128, min=1, help="Truncate texts to this many tokens."),
) -> None:
    """Print vectors as JSON: {model, dim, normalized, vectors}."""
    from meqg_mlx.encoder import load_embedder

    embedder = load_embedder(backend, str(model or ""), dtype, max_tokens, output)
    vectors = embedder.encode(list(texts))
    print(
        json.dumps(
            {
                "model": embedder.name,
                "dim": embedder.dim,
                "normalized": embedder.normalized,
                "vectors": [[round(float(x), 7) for x in row] for row in vectors],
            }
        )
    )


DEMO_SETTINGS = {  # a small VMM that trains in about a minute on 2 CPU cores
    "vmm": {
        "d_model": 64,
        "n_layers": 2,
        "d_state": 16,
        "head_dim": 32,
        "chunk_size": 16,
        "n_experts": 4,
        "d_ff": 128,
        "rvq_levels": 2,
        "rvq_codes": 64,
    },
    "train": {
        "steps": 150,
        "batch_size": 16,
        "seq_len": 32,
        "eval_every": 50,
        "checkpoint_every": 50,
        "kappa_every": 50,
        "validation_windows": 128,
    },
}


@app.command()
def demo(
    store: Optional[Path] = StoreOption,
    run: Optional[Path] = typer.Option(None, "--run", help="Run directory [default: $MEQG_HOME/runs/demo]"),
    steps: int = typer.Option(DEMO_SETTINGS["train"]["steps"], help="Training steps."),
) -> None:
    """The main job on the embedded default: build the stdlib store if missing, search it, train a small VMM."""
    from meqg_mlx.concepts import ConceptStore
    from meqg_mlx.concepts.search import search_subjects
    from meqg_mlx.config import MeqgConfig, from_dict
    from meqg_mlx.encoder import default_embedder
    from meqg_mlx.paths import default_store, new_run_dir
    from meqg_mlx.train.run import TrainingRun

    from .train_commands import print_summary, train_with_progress

    store = store or default_store()
    if not (store / "meqg_store.json").exists():
        console.print(f"[bold]meqg demo[/]: building the default concept store from this Python's stdlib at {store}")
        build(store, ["stdlib"], None, None, "text")
    concepts = ConceptStore.open(store)
    embedder = default_embedder()
    stats = concepts.stats()
    out.print(
        f"\n[bold]{stats['concepts']}[/] concepts, {stats['relations']} relations, "
        f"{len(stats['domains'])} domains ({stats['origin_model']}, {stats['dim']}-d)"
    )
    for query in (
        "sort a list in place",
        "read a file line by line",
        "parse JSON from a string",
        "join directory and file names into one path",
    ):
        store_commands.print_results(query, search_subjects(concepts, embedder.encode([query])[0], 3))
    run = run or new_run_dir("demo")
    out.print(f"\n[bold]training a small VMM[/] for {steps} gated steps into {run}", soft_wrap=True)
    training = TrainingRun(run, store, from_dict(MeqgConfig, DEMO_SETTINGS), steps=steps)
    out.print(
        f"{training.trainer.model.parameter_count():,} parameters, "
        f"{len(training.trainer.train_docs)} training / {len(training.trainer.val_docs)} validation documents"
    )
    print_summary(train_with_progress(training))
    out.print(
        f"\nnext: [bold]meqg monitor {run} --replay 10[/] (the run in the monitor), "
        f"[bold]meqg train --run {run} --resume --steps {2 * steps} --monitor[/], "
        '[bold]meqg store search "..."[/], [bold]meqg data build --source wordnet[/]',
        soft_wrap=True,
    )


def run() -> None:
    """Console-script entry: one line on stderr and exit 2 for any meqg error."""
    try:
        app()
    except MeqgError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    run()
