"""`meqg app`: the workbench in the terminal, or served to a browser with --web."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from meqg_tui import SCREENS

from .options import StoreOption, check_listener
from .progress import console


def register(app: typer.Typer) -> None:
    app.command("app")(workbench)


def workbench(
    store: StoreOption = None,
    runs: Annotated[
        Optional[Path], typer.Option("--runs", help="Directory of runs [default: $MEQG_HOME/runs].")
    ] = None,
    screen: Annotated[str, typer.Option(help=f"The screen it opens on: {', '.join(SCREENS)}.")] = "store",
    web: Annotated[bool, typer.Option("--web", help="Serve the app to a browser instead (textual-serve).")] = False,
    host: Annotated[str, typer.Option(help="With --web: interface; other than loopback needs --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="With --web: TCP port.")] = 8010,
    token: Annotated[
        Optional[str], typer.Option(envvar="MEQG_APP_TOKEN", help="With --web: open the page as /?token=TOKEN.")
    ] = None,
) -> None:
    """The workbench: store, runs and their monitor, episodes, eval reports (F1-F4; ctrl+q quits)."""
    from meqg_mlx.errors import InputError
    from meqg_mlx.paths import default_store, meqg_home

    if screen not in SCREENS:
        raise InputError(f"unknown screen {screen!r} (known: {', '.join(SCREENS)})")
    store_path = store or str(default_store())
    runs_root = runs or meqg_home() / "runs"
    if web:
        check_listener(host, token)
        from meqg_tui.web import AppServer

        command = [sys.executable, "-m", "meqg_cli.main", "app", "--store", store_path, "--runs", str(runs_root)]
        command += ["--screen", screen]
        console.print(f"meqg app: http://{host}:{port}/{'?token=…' if token else ''} (Ctrl-C stops)")
        AppServer(shlex.join(command), host, port, token).serve()
        return
    from meqg_tui.workbench import WorkbenchApp

    WorkbenchApp(Path(store_path), runs_root, meqg_home(), screen).run()
