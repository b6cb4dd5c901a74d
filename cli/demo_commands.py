"""`meqg demo`: the main job on the embedded default, end to end.

Builds the stdlib store if missing, searches it, trains a small VMM, runs one Diamond
episode on it and one decode round trip, timing each, then prints what to try next.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import store_commands
from .data_commands import build
from .decode_commands import print_decoded
from .episode_commands import print_response
from .options import StoreOption
from .progress import console, out
from .train_commands import print_summary, train_with_progress

DEMO_SETTINGS = {  # a small VMM that trains in about a minute on 2 CPU cores
    "vmm": {"d_model": 64, "n_layers": 2, "d_state": 16, "head_dim": 32, "chunk_size": 16, "n_experts": 4,
            "d_ff": 128, "rvq_levels": 2, "rvq_codes": 64},
    "train": {"steps": 150, "batch_size": 16, "seq_len": 32, "eval_every": 50, "checkpoint_every": 50,
              "kappa_every": 50, "validation_windows": 128},
}  # fmt: skip
QUERIES = ("sort a list in place", "read a file line by line", "parse JSON from a string",
           "join directory and file names into one path")  # fmt: skip
PROMPT = "Read a file line by line. Strip each line and keep the ones that are not empty."
ROUND_TRIP = ["Sort a list in place.", "Remove the whitespace at both ends of a string."]


def register(app: typer.Typer) -> None:
    app.command()(demo)


def demo(
    store: StoreOption = None,
    run: Annotated[Optional[Path], typer.Option("--run", help="Run directory [default: $MEQG_HOME/runs/demo]")] = None,
    steps: Annotated[int, typer.Option(help="Training steps.")] = DEMO_SETTINGS["train"]["steps"],
) -> None:
    """The main job: store (built if missing), search, a small gated VMM, one episode, one decode round trip."""
    from meqg_mlx.concepts import ConceptStore
    from meqg_mlx.concepts.search import search_subjects
    from meqg_mlx.config import MeqgConfig, from_dict
    from meqg_mlx.encoder import default_embedder
    from meqg_mlx.episode.budget import Budget
    from meqg_mlx.episode.engine import DiamondEngine
    from meqg_mlx.inversion.decode import RunDecoder
    from meqg_mlx.paths import default_store, new_run_dir
    from meqg_mlx.train.run import TrainingRun

    store = store or default_store()
    if not ConceptStore.exists(store):
        console.print(f"[bold]meqg demo[/]: building the default concept store from this Python's stdlib at {store}")
        build(store, ["stdlib"], None, None, "text")
    concepts = ConceptStore.open(store)
    embedder = default_embedder()
    stats = concepts.stats()
    out.print(
        f"\n[bold]{stats['concepts']}[/] concepts, {stats['relations']} relations, "
        f"{len(stats['domains'])} domains ({stats['origin_model']}, {stats['dim']}-d)"
    )
    for query in QUERIES:
        store_commands.print_results(query, search_subjects(concepts, embedder.encode([query])[0], 3))

    run = run or new_run_dir("demo")
    out.print(f"\n[bold]training a small VMM[/] for {steps} gated steps into {run}", soft_wrap=True)
    training = TrainingRun(run, store, from_dict(MeqgConfig, DEMO_SETTINGS), steps=steps)
    out.print(
        f"{training.trainer.model.parameter_count():,} parameters, "
        f"{len(training.trainer.train_docs)} training / {len(training.trainer.val_docs)} validation documents"
    )
    print_summary(train_with_progress(training))

    started = time.perf_counter()
    engine = DiamondEngine.from_run(run, embedder)
    loaded = time.perf_counter() - started
    out.print(f"\n[bold]one Diamond episode[/] on {run} (loaded in {loaded:.2f} s): {PROMPT!r}", soft_wrap=True)
    started = time.perf_counter()
    print_response(engine.run(PROMPT, ["store"], Budget(seconds=2.0)))
    out.print(f"episode: {time.perf_counter() - started:.2f} s")

    out.print("\n[bold]decode round trip[/] (text -> vector -> store lookup)")
    started = time.perf_counter()
    decoder = RunDecoder.from_run(run, embedder=embedder)
    print_decoded(decoder.texts(ROUND_TRIP), ROUND_TRIP, decoder.lookup.threshold, run)
    out.print(f"decode: {time.perf_counter() - started:.2f} s")

    out.print(
        f"\nnext: [bold]meqg monitor {run} --replay 10[/] (the run in the monitor), "
        f"[bold]meqg train --run {run} --resume --steps {2 * steps} --monitor[/], "
        f'[bold]meqg run "..." --run {run} --tools python,store[/], '
        f"[bold]meqg serve --run {run}[/] (POST /v1/diamond/run), "
        f"[bold]meqg inverter train --store {store} --run {run}[/] (text for store misses), "
        f"[bold]meqg export torch --run {run} --out DIR[/] (the model for plain PyTorch), "
        f"[bold]meqg export coreml --run {run} --out DIR[/] (a bundle for apps on macOS and iOS), "
        f"[bold]meqg train --run {run} --resume --engine torch --nproc 2[/] (PyTorch under torchrun).",
        soft_wrap=True,
    )
