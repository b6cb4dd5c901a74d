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
