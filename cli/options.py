"""Options several commands share, defined once (typer's Annotated style)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

StoreOption = Annotated[
    Optional[str],
    typer.Option("--store", help="Concept store: a directory or s3://BUCKET/PATH [default: $MEQG_HOME/stores/stdlib]"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
RunStoreOption = Annotated[
    Optional[str],
    typer.Option("--store", help="The run's store where it is now, if it moved [default: where the run recorded it]."),
]


def check_listener(host: str, token: str | None) -> None:
    """Off loopback a server needs a token of at least 16 characters (`meqg serve`, `meqg app --web`)."""
    from meqg_mlx.episode.server import is_loopback
    from meqg_mlx.errors import InputError

    if not is_loopback(host) and not token:
        raise InputError(f"listening on {host} (not loopback) needs --token, which every request must then carry")
    if token is not None and len(token) < 16:
        raise InputError("--token must have at least 16 characters")
