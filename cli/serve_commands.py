"""`meqg serve`: Diamond episodes over HTTP (the app is `meqg_mlx.episode.server`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import RunStoreOption, check_listener
from .progress import console


def register(app: typer.Typer) -> None:
    app.command()(serve)


def serve(
    run: Annotated[Path, typer.Option("--run", help="Trained run directory (its latest checkpoint, store, inverter).")],
    host: Annotated[str, typer.Option(help="Interface to listen on; other than loopback needs --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    token: Annotated[
        Optional[str],
        typer.Option(envvar="MEQG_SERVE_TOKEN", help="Every request must carry 'Authorization: Bearer TOKEN'."),
    ] = None,
    allow_python: Annotated[
        bool, typer.Option(help="Let requests use the python tool (needs the OS sandbox: meqg doctor).")
    ] = False,
    max_queue: Annotated[int, typer.Option(min=1, max=1024, help="Episodes waiting or running; more get 503.")] = 8,
    max_seconds: Annotated[float, typer.Option(min=0.01, help="Longest episode budget a request may ask for.")] = 60.0,
    max_flops: Annotated[float, typer.Option(min=1.0, help="Largest FLOP budget a request may ask for.")] = 1e13,
    request_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds a client has to send a request's headers, and then its body.")
    ] = 10.0,
    store: RunStoreOption = None,
) -> None:
    """Serve POST /v1/diamond/run and GET /healthz for a trained run."""
    from meqg_mlx.episode.engine import DiamondEngine
    from meqg_mlx.episode.server import ServerLimits, create_app, listening_socket, serve_app
    from meqg_mlx.errors import InputError
    from meqg_mlx.sandbox import isolation

    check_listener(host, token)
    if allow_python and not isolation().safe:
        raise InputError(f"--allow-python needs the OS sandbox, and there is none here ({isolation().detail})")
    limits = ServerLimits(
        token=token,
        allow_python=allow_python,
        max_queue=max_queue,
        body_timeout_s=request_timeout,
        header_timeout_s=request_timeout,
        budget=dataclasses.replace(ServerLimits().budget, seconds=max_seconds, max_flops=max_flops),
    )
    listener = listening_socket(host, port)  # before the model loads: a port in use fails at once
    console.print(f"meqg serve: loading {run}")
    engine = DiamondEngine.from_run(run, store_path=store)
    console.print(
        f"meqg serve: http://{host}:{port}/v1/diamond/run (python tool {'on' if allow_python else 'off'}; Ctrl-C stops)"
    )
    serve_app(create_app(engine, run, limits), listener, limits)
