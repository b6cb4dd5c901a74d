"""`meqg inverter train`: an MLX inverter (vector -> text) trained on a store's texts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .progress import console, out, progress_bar
from .train_commands import stop_on_sigint

app = typer.Typer(help="The inverter: vectors back to text where the store has no close concept.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="inverter")


@app.command("train")
def train(
    run: Annotated[
        Path,
        typer.Option(
            "--run", help="Run directory; the inverter goes to RUN/inverter/ (a trained VMM run there decodes with it)."
        ),
    ],
    steps: Annotated[
        Optional[int], typer.Option(help="Train until this step [default: config inversion.steps].")
    ] = None,
    config_file: Annotated[
        Optional[Path], typer.Option("--config", help="YAML config (inversion and inverter sections used here).")
    ] = None,
    store: Annotated[
        Optional[str],
        typer.Option(
            "--store",
            help="Concept store whose texts and vectors it learns from [default: the store of the run in --run].",
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run's inverter exactly where its last checkpoint left it.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace the run's inverter and its telemetry.")] = False,
) -> None:
    """Train the inverter; Ctrl-C stops after the current step and saves it."""
    from meqg_mlx.concepts.store import ConceptStore
    from meqg_mlx.config import load_config, with_values
    from meqg_mlx.encoder import embedder_from_config
    from meqg_mlx.errors import ConfigError, InputError
    from meqg_mlx.inversion.training import InverterTraining, resumable
    from meqg_mlx.runs import RunDir

    if resume and (force or config_file):
        raise ConfigError("--resume keeps the inverter's own config and weights: drop --force/--config")
    if resume:
        resumable(RunDir(run).inverter)
    config = load_config(RunDir(run).inverter.config_path if resume else config_file)
    if steps is not None:
        config.inversion = with_values(config.inversion, "inversion.", steps=steps)
    if RunDir(run).exists():
        opened = ConceptStore.of_run(RunDir(run).read_meta(), config.store, store)  # a --store elsewhere: moved
    elif store is None:
        raise InputError(f"{run} holds no run yet: give --store, the store the inverter learns from")
    else:
        opened = ConceptStore.open(store, config.store)
    every = max(config.inversion.steps // 10, 1)
    with progress_bar() as bar, stop_on_sigint() as stopped:

        def update(stage: str, done: int, total: int) -> None:
            training_step = stage.startswith("inverter loss")
            bar("training inverter" if training_step else stage, done, total)
            if training_step and not console.is_terminal and (done % every == 0 or done == total):
                out.print(f"step {done}/{total} {stage.removeprefix('inverter ')}")

        update("loading encoder", 0, 1)
        embedder = embedder_from_config(config)
        update("loading encoder", 1, 1)
        training = InverterTraining(opened, run, embedder, config, update, resume=resume, force=force)
        console.print(
            f"inverter: {len(training.train_set.ids)} training texts, {len(training.held_out.ids)} held out, "
            f"vocabulary {training.vocab.size}; telemetry in {training.inverter.telemetry_path}",
            soft_wrap=True,
        )
        summary = training.train(stopped)
    state = "stopped" if summary.interrupted else "finished"
    out.print(
        f"[bold]{summary.directory}[/]: {state} at step {summary.steps} in {summary.seconds:.0f} s; "
        f"loss {summary.first_loss:.3f} -> {summary.last_loss:.3f}, held-out {summary.held_out_loss:.3f} "
        f"({summary.trained_texts} texts trained, {summary.held_out_texts} held out)",
        soft_wrap=True,
    )
