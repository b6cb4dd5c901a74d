"""`meqg monitor RUN_DIR`: the Textual monitor on a run's telemetry (live, or replayed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from meqg_mlx.errors import InputError
from meqg_mlx.runs import RunDir


def register(app: typer.Typer) -> None:
    app.command()(monitor)


def monitor(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by `meqg train` (its telemetry.jsonl).")],
    replay: Annotated[
        Optional[float],
        typer.Option("--replay", metavar="SPEED", help="Replay the run from its start at SPEED x its recorded pace."),
    ] = None,
    stall_after: Annotated[
        float, typer.Option(help="Seconds without a record before a live run shows as stalled.")
    ] = 30.0,
    window: Annotated[int, typer.Option(help="Steps the plots show while following.")] = 200,
) -> None:
    """Watch a training run live (p pause, f follow, tab panels, s screenshot, ? keys, q quit)."""
    if not run_dir.is_dir():
        raise InputError(f"no run directory {run_dir}")
    run = RunDir(run_dir)
    if any(run_dir.iterdir()) and not (run.exists() or run.config_path.exists() or run.telemetry_path.exists()):
        # an empty directory may be a run being created: the monitor waits for its telemetry
        raise InputError(f"{run_dir} is not a run directory (no run.json, config.yaml or telemetry.jsonl in it)")
    if replay is not None and not replay > 0:
        raise InputError(f"--replay SPEED must be > 0, got {replay}")
    telemetry = run.telemetry_path
    if replay is not None and not telemetry.is_file():
        raise InputError(f"nothing to replay: {telemetry} does not exist")
    if window < 1 or not stall_after > 0:
        raise InputError("--window must be >= 1 and --stall-after > 0")
    from meqg_tui.monitor import MonitorApp

    MonitorApp(run_dir, replay, stall_after, window).run()
