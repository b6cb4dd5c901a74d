"""Options several commands share, defined once (typer's Annotated style)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

StoreOption = Annotated[
    Optional[Path], typer.Option("--store", help="Concept store directory [default: $MEQG_HOME/stores/stdlib]")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
