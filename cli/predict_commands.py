"""`meqg predict`: what a trained model names next, without an episode or a gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import JsonOption, RunStoreOption
from .progress import out, short


def register(app: typer.Typer) -> None:
    app.command()(predict)


def predict(
    run: Annotated[Path, typer.Option("--run", help="Trained run directory (its latest checkpoint and store).")],
    text: Annotated[Optional[str], typer.Argument(help="Start from this text (the run's encoder embeds it).")] = None,
    concept_id: Annotated[Optional[int], typer.Option("--id", help="Start from this store concept instead.")] = None,
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="Concepts shown per step.")] = 5,
    relation: Annotated[
        str, typer.Option(help="The relation each step follows: one of the run's (vmm.relations in its config.yaml).")
    ] = "next",
    steps: Annotated[int, typer.Option(min=1, max=64, help="Greedy steps; each feeds the nearest concept on.")] = 1,
    store: RunStoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """The model's top-k next concepts (texts and cosines), one step or several greedily."""
    from meqg_mlx.config import load_run
    from meqg_mlx.corpus.relations import RelationVocabulary
    from meqg_mlx.encoder import embedder_from_config
    from meqg_mlx.encoder.base import check_texts
    from meqg_mlx.errors import InputError
    from meqg_mlx.runs import RunDir
    from meqg_mlx.trained import TrainedRun

    if (text is None) == (concept_id is None):
        raise InputError("give a TEXT to start from or --id ID, not both or neither")
    if text is not None:
        check_texts([text])
    config = load_run(RunDir(run))[1]
    RelationVocabulary.of_model(config.vmm.relations).id(relation)  # before anything loads
    trained = TrainedRun.open(run, store_path=store)
    if concept_id is not None:
        rows = trained.table.row_of
        if not 0 <= concept_id < len(rows) or rows[concept_id] < 0:
            raise InputError(f"no concept with id {concept_id} in {trained.store.uri}")
        start, label = trained.table.vectors[rows[concept_id]], trained.store.get([concept_id])[0]["text"]
    else:
        embedder = embedder_from_config(trained.config)
        trained.store.check_model(embedder.name, embedder.dim)
        start, label = embedder.encode([text])[0], text
    found = trained.predict(start, relation, k, steps)
    if as_json:
        print(json.dumps({"start": label, "relation": relation, "steps": found}, indent=1))
        return
    out.print(f"[bold]{run}[/] from {short(label, 90)!r}, following {relation}:", soft_wrap=True)
    for step, concepts in enumerate(found, 1):
        out.print(f" step {step}")
        for rank, concept in enumerate(concepts, 1):
            out.print(
                f"  {rank:>2}. {concept['cosine']:.3f}  [{concept['id']}] {short(concept['text'], 90)}",
                markup=False,
                soft_wrap=True,
            )
