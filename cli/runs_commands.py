"""`meqg runs [DIR]`: the runs under $MEQG_HOME/runs (or DIR), one row each."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import JsonOption
from .progress import out


def register(app: typer.Typer) -> None:
    app.command("runs")(runs)


def runs(
    directory: Annotated[
        Optional[Path], typer.Argument(help="A directory of runs (or one run) [default: $MEQG_HOME/runs].")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Each run: id, status, step, store, parameters, last validation beside the best baseline, inverter."""
    from rich.console import Console
    from rich.table import Table

    from meqg_mlx.errors import InputError
    from meqg_mlx.paths import meqg_home
    from meqg_mlx.runs import runs_under
    from meqg_mlx.telemetry import run_overview, validation_line

    root = directory or meqg_home() / "runs"
    if not root.is_dir():
        raise InputError(f"no runs directory {root}")
    rows = [run_overview(run) for run in runs_under(root)]
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    if not rows:
        out.print(f"no runs under {root}")
        return
    table = Table("run", "id", "status", "step", "parameters", "last validation: r@1 model vs best baseline",
                  "inverter", "modified", "store", title=f"runs under {root}", title_justify="left")  # fmt: skip
    for row in rows:
        table.add_row(
            Path(row["run"]).name,
            row["run_id"],
            row["status"],
            str(row["step"]),
            "-" if row["parameters"] is None else f"{row['parameters']:,}",
            validation_line(row["validation"]),
            "yes" if row["inverter"] else "no",
            datetime.datetime.fromtimestamp(row["modified"]).strftime("%Y-%m-%d %H:%M"),
            row["store"],
        )
    (out if out.is_terminal else Console(width=240, highlight=False)).print(table)  # a pipe gets whole rows
