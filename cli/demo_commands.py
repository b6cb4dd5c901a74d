"""`meqg demo`: the main job on the embedded default, end to end.

Builds the default store if missing (the stdlib, and WordNet's animals and foods when
WordNet is installed), searches it, trains a small VMM on its documents and typed
relations, prints the model beside the baselines on held-out concepts, rolls one held-out
chain forward decoding each step, runs one Diamond episode and one decode round trip,
timing each, then prints what to try next.
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
from .progress import console, out, short
from .train_commands import print_summary, train_with_progress

WORDNET_SOURCE = "wordnet@animal,food"  # 5,609 synsets: seconds to embed, where all of WordNet takes minutes
CHAIN_RELATIONS = ("hypernym", "contains", "next")  # the held-out chain rolled out: the first kind the store has
QUERIES = ("sort a list in place", "read a file line by line", "parse JSON from a string",
           "join directory and file names into one path")  # fmt: skip
PROMPT = "Read a file line by line. Strip each line and keep the ones that are not empty."
ROUND_TRIP = ["Sort a list in place.", "Remove the whitespace at both ends of a string."]


def register(app: typer.Typer) -> None:
    app.command()(demo)


def demo(
    store: StoreOption = None,
    run: Annotated[Optional[Path], typer.Option("--run", help="Run directory [default: $MEQG_HOME/runs/demo]")] = None,
    steps: Annotated[
        Optional[int], typer.Option(min=1, help="Training steps [default: train.steps of data/configs/demo.yaml].")
    ] = None,
) -> None:
    """The main job: store (built if missing), search, a small gated VMM, one episode, one decode round trip."""
    from meqg_mlx.concepts import ConceptStore
    from meqg_mlx.concepts.search import search_subjects
    from meqg_mlx.concepts.sources.wordnet import find_wordnet
    from meqg_mlx.config import load_config
    from meqg_data import DEMO_CONFIG
    from meqg_mlx.encoder import default_embedder
    from meqg_mlx.episode.budget import Budget
    from meqg_mlx.episode.engine import DiamondEngine
    from meqg_mlx.inversion.decode import RunDecoder
    from meqg_mlx.paths import default_store, new_run_dir
    from meqg_mlx.train.run import TrainingRun

    store = store or default_store()
    if not ConceptStore.exists(store):
        sources = ["stdlib", WORDNET_SOURCE] if find_wordnet() else ["stdlib"]
        console.print(f"[bold]meqg demo[/]: building the default concept store at {store} from {' + '.join(sources)}")
        if not find_wordnet():
            console.print("WordNet is not installed, so no lexical relations (Debian: apt-get install wordnet-base)")
        build(store, sources, None, None, "text")
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
    config = load_config(DEMO_CONFIG)
    steps = steps or config.train.steps
    out.print(
        f"\n[bold]training a small VMM[/] ({DEMO_CONFIG.name}) for {steps} gated steps into {run}", soft_wrap=True
    )
    training = TrainingRun(run, store, config, steps=steps)
    split = training.trainer.split
    out.print(
        f"{training.trainer.model.parameter_count():,} parameters, "
        f"{len(split.train_docs)} training / {len(split.val_docs)} validation documents"
    )
    print_summary(train_with_progress(training))
    roll_held_out_chain(run)

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
        f"\nnext: [bold]meqg app --store {store} --runs {run.parent}[/] (the workbench: store, runs, episodes, "
        f"eval; [bold]--web[/] for a browser), [bold]meqg monitor {run} --replay 10[/] (the run in the monitor), "
        f"[bold]meqg train --run {run} --resume --steps {2 * steps} --monitor[/], "
        f'[bold]meqg run "..." --run {run} --tools python,store[/], '
        f"[bold]meqg serve --run {run}[/] (POST /v1/diamond/run), "
        f"[bold]meqg inverter train --store {store} --run {run}[/] (text for store misses), "
        f"[bold]meqg export torch --run {run} --out DIR[/] (the model for plain PyTorch), "
        f"[bold]meqg export coreml --run {run} --out DIR[/] (a bundle for apps on macOS and iOS), "
        f"[bold]meqg train --run {run} --resume --engine torch --nproc 2[/] (PyTorch under torchrun).",
        soft_wrap=True,
    )


def roll_held_out_chain(run: Path, steps: int = 2) -> None:
    """One held-out chain (a synset's hypernyms, else a module's members, else a document) rolled out
    free-running, each prediction decoded to the nearest store concept outside the context."""
    import numpy as np

    from meqg_mlx.eval.tasks import held_out_chains
    from meqg_mlx.trained import TrainedRun

    trained = TrainedRun.open(run)
    table, vocabulary = trained.table, trained.vocabulary
    chains = held_out_chains(trained.store, table, trained.config.train.validation_fraction, steps + 1, vocabulary)
    chains = [c for c in chains if len(c.rows) == steps + 1]
    kinds = [k for k in CHAIN_RELATIONS if k in vocabulary.names]
    picked = next((c for k in kinds for c in chains if (c.relations == vocabulary.id(k)).all()), None)
    if picked is None:
        out.print("\nno held-out chain of 2 steps in this store to roll out")
        return
    texts = [row["text"] for row in trained.store.get(table.ids[picked.rows].tolist())]
    names = [vocabulary.names[r] for r in picked.relations]
    out.print(f"\n[bold]a held-out chain rolled out[/] ({' -> '.join(names)}) from {short(texts[0])!r}", soft_wrap=True)
    predict, context, used = trained.next_vectors, table.vectors[picked.rows[:1]], [int(picked.rows[0])]
    for step, relation in enumerate(picked.relations):
        predicted = predict(context[None], picked.relations[None, : step + 1])[0]
        cosines = table.vectors @ predicted
        cosines[used] = -np.inf
        guess = int(np.argmax(cosines))
        truth = int(picked.rows[step + 1])
        mark = "right" if guess == truth else f"truth: {short(texts[step + 1])!r}"
        guessed = trained.store.get([int(table.ids[guess])])[0]["text"]
        out.print(f"  {names[step]:>9} -> {short(guessed)!r} ({mark})")
        context = np.concatenate([context, (predicted / np.linalg.norm(predicted))[None].astype(np.float32)])
        used.append(guess)
