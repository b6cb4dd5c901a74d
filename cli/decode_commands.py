"""`meqg decode`: vectors (or texts, round-tripped) back to text through a run's store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.text import Text

from .options import RunStoreOption
from .progress import out


def register(app: typer.Typer) -> None:
    app.command()(decode)


def decode(
    run: Annotated[Path, typer.Option("--run", help="Run directory (its store and inversion settings).")],
    texts: Annotated[Optional[List[str]], typer.Argument(help="Texts to encode and decode again.")] = None,
    vectors: Annotated[
        Optional[Path], typer.Option("--vectors", help="Decode vectors from a .npy or JSON file.")
    ] = None,
    threshold: Annotated[
        Optional[float], typer.Option(help="Cosine a store concept needs [default: config inversion.lookup_threshold].")
    ] = None,
    steps: Annotated[
        Optional[int],
        typer.Option(
            "--steps", help="Correction steps for inverted vectors [default: config inversion.correction_steps]."
        ),
    ] = None,
    write_back: Annotated[
        Optional[bool],
        typer.Option(
            "--write-back/--no-write-back",
            help="Add inverted texts that come close enough to the store (source=inversion, under their own "
            "embedding) [default: config inversion.write_back].",
        ),
    ] = None,
    write_back_min: Annotated[
        Optional[float],
        typer.Option(
            "--write-back-min",
            help="Cosine an inverted text's own embedding needs to be written back "
            "[default: config inversion.target_cosine].",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed of the corrector (each vector is also its own key).")] = 0,
    vec2text: Annotated[
        Optional[Path],
        typer.Option(
            "--vec2text",
            help="A pretrained vec2text inversion model "
            "directory to invert with [default: config inversion.vec2text_inverter].",
        ),
    ] = None,
    vec2text_corrector: Annotated[Optional[Path], typer.Option(help="Its corrector directory.")] = None,
    vec2text_embedder: Annotated[
        Optional[Path], typer.Option(help="The sentence-transformers directory vec2text inverts (gtr-t5-base).")
    ] = None,
    column: Annotated[
        Optional[str],
        typer.Option(
            help="The store's vector column of that embedder's vectors "
            "(`meqg store add-vectors`, `meqg store project`)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    store: RunStoreOption = None,
) -> None:
    """Vectors back to text: the nearest store concept when it is close enough, else the run's inverter
    (`meqg inverter train`), or a pretrained vec2text model, with the corrector loop."""
    import dataclasses

    from meqg_mlx.encoder.base import load_vector_file
    from meqg_mlx.errors import InputError
    from meqg_mlx.inversion.decode import RunDecoder

    if bool(texts) == (vectors is not None):
        raise InputError("give either TEXT... or --vectors FILE")
    decoder = RunDecoder.from_run(
        run,
        threshold,
        vec2text={
            "inverter": vec2text,
            "corrector": vec2text_corrector,
            "embedder": vec2text_embedder,
            "column": column,
        },
        store_path=store,
    )
    if vectors is not None:
        decoded, labels = decoder.vectors(load_vector_file(vectors), steps, write_back, seed, write_back_min), None
    else:
        decoded, labels = decoder.texts(texts, steps, write_back, seed, write_back_min), texts
    if as_json:
        print(json.dumps([dataclasses.asdict(d) for d in decoded], indent=1))
        return
    print_decoded(decoded, labels, decoder.lookup.threshold, run)


def print_decoded(decoded, labels: list[str] | None, threshold: float, run: Path) -> None:
    """Each decoded vector: where its text came from (store, inverter, nearest) and the cosine of that text."""
    for i, d in enumerate(decoded):
        label = labels[i] if labels else f"vector {i}"
        if d.hit:
            shown = f"store cos {d.cosine:.3f} #{d.concept_id}: {d.text}"
        elif d.source == "nearest":
            shown = (
                f"nearest store text, closer than any inverted one in {d.correction_steps} corrections, "
                f"cos {d.cosine:.3f} #{d.concept_id}: {d.text}"
            )
        elif d.source == "inversion":
            found = "first pass" if not d.found_at else f"correction {d.found_at}"
            shown = (
                f"inverter cos {d.cosine:.3f} ({found}, {d.correction_steps} corrections ran)"
                f"{f' written as #{d.written_id}' if d.written_id is not None else ''}: {d.text}"
            )
        else:
            shown = (
                f"no store concept >= {threshold:g} and no inverter in {run}; "
                f"nearest cos {d.score:.3f} #{d.concept_id}: {d.nearest_text}"
            )
        out.print(Text.assemble((label, "dim"), " -> ", " ".join(shown.split())), soft_wrap=True)
        if d.not_written:
            out.print(Text(f"  not written back: {d.not_written}", "dim"), soft_wrap=True)
