"""`meqg decode`: vectors (or texts, round-tripped) back to text through a run's store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.text import Text

from .progress import out


def register(app: typer.Typer) -> None:
    app.command()(decode)


def decode(
    texts: Optional[List[str]] = typer.Argument(None, help="Texts to encode and decode again."),
    run: Path = typer.Option(..., "--run", help="Run directory (its store and inversion settings)."),
    vectors: Optional[Path] = typer.Option(None, "--vectors", help="Decode vectors from a .npy or JSON file."),
    threshold: Optional[float] = typer.Option(None, help="Cosine a store concept needs [default: config "
                                                         "inversion.lookup_threshold]."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Vectors back to text: the nearest store concept when it is close enough (the inverter comes later)."""
    from meqg_mlx.encoder import default_embedder
    from meqg_mlx.encoder.base import load_vector_file
    from meqg_mlx.errors import InputError
    from meqg_mlx.inversion.decode import RunDecoder

    if bool(texts) == (vectors is not None):
        raise InputError("give either TEXT... or --vectors FILE")
    decoder = RunDecoder(run, threshold)
    if vectors is not None:
        decoded, labels = decoder.vectors(load_vector_file(vectors)), None
    else:
        decoded, labels = decoder.texts(texts, default_embedder()), texts
    if as_json:
        print(json.dumps([{"text": d.text, "score": d.score, "concept_id": d.concept_id,
                           "nearest_text": d.nearest_text} for d in decoded], indent=1))
        return
    for i, d in enumerate(decoded):
        source = labels[i] if labels else f"vector {i}"
        shown = d.text if d.hit else f"(no store concept >= {decoder.lookup.threshold:g}; nearest: {d.nearest_text})"
        out.print(Text.assemble((source, "dim"), f" -> cos {d.score:.3f} #{d.concept_id}: {' '.join(shown.split())}"),
                  soft_wrap=True)
