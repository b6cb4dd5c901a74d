"""`meqg encode`: texts to vectors, printed as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    app.command()(encode)


def encode(
    texts: Annotated[list[str], typer.Argument(help="Texts to embed.")],
    backend: Annotated[
        str, typer.Option(help="auto (the faster here) | mlx (meqg's port) | torch (sentence-transformers).")
    ] = "auto",
    model: Annotated[
        Optional[Path],
        typer.Option(help="A local sentence-transformers directory [default: bundled all-MiniLM-L6-v2]."),
    ] = None,
    dtype: Annotated[str, typer.Option(help="float32 | float16 | bfloat16 (mlx).")] = "float32",
    output: Annotated[
        str,
        typer.Option(
            help="sentence (the model's own vector) | mean (unnormalised mean-pooled states, for GTR inverters; mlx)."
        ),
    ] = "sentence",
    max_tokens: Annotated[int, typer.Option(min=1, help="Truncate texts to this many tokens.")] = 128,
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
