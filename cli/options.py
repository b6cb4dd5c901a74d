"""Options several commands share, defined once."""

from __future__ import annotations

import typer

StoreOption = typer.Option(None, "--store", help="Concept store directory [default: $MEQG_HOME/stores/stdlib]")
JsonOption = typer.Option(False, "--json", help="Machine-readable output.")
