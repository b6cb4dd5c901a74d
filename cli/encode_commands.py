"""`meqg encode`: texts to vectors, printed as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command()(encode)


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
