"""`meqg serve`: Diamond episodes over HTTP (Starlette app, uvicorn server).

POST /v1/diamond/run takes an episode request (docs/design.md, HTTP API); GET /healthz
says what is loaded. A bad request is a 400 with {"error": reason}. Episodes share one
model, so they run one at a time in a worker thread while the event loop keeps
accepting requests; each response reports the seconds it waited in `queue_seconds`.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from typing import Annotated

import typer

from .progress import console

MAX_BODY_BYTES = 1 << 20


def register(app: typer.Typer) -> None:
    app.command()(serve)


def serve(
    run: Annotated[Path, typer.Option("--run", help="Trained run directory (its latest checkpoint, store, inverter).")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Serve POST /v1/diamond/run and GET /healthz for a trained run."""
    import uvicorn

    from meqg_mlx.episode.engine import DiamondEngine

    console.print(f"meqg serve: loading {run}")
    engine = DiamondEngine.from_run(run)
    console.print(f"meqg serve: http://{host}:{port}/v1/diamond/run (Ctrl-C stops)")
    uvicorn.run(create_app(engine, run), host=host, port=port, log_level="warning")


def create_app(engine, run: Path):
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from meqg_mlx.episode.request import EpisodeRequest
    from meqg_mlx.errors import MeqgError
    from meqg_mlx.runs import RunDir
    from meqg_mlx.telemetry import json_safe

    lock = threading.Lock()
    run_id = RunDir(run).read_meta()["run_id"]

    def error(status: int, reason: str) -> JSONResponse:
        return JSONResponse({"error": reason}, status_code=status)

    async def healthz(request):
        return JSONResponse(
            {
                "status": "ok",
                "run": str(run),
                "run_id": run_id,
                "store": str(engine.store.path),
                "concepts": engine.store.count(),
                "inverter": engine.corrector is not None,
            }
        )

    def episode(parsed: EpisodeRequest, arrived: float) -> dict:
        with lock:
            waited = time.perf_counter() - arrived
            response = engine.with_config(parsed.config).run(
                parsed.prompt, parsed.tools, parsed.budget, parsed.telemetry
            )
        return {"model": parsed.model or run_id, **response, "queue_seconds": waited}

    async def diamond_run(request):
        arrived = time.perf_counter()
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return error(413, f"request body has {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
        try:
            parsed = EpisodeRequest.from_json(json.loads(body), engine.config)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return error(400, f"the body is not JSON ({exc})")
        except MeqgError as exc:
            return error(400, str(exc))
        try:
            return JSONResponse(json_safe(await run_in_threadpool(episode, parsed, arrived)))
        except MeqgError as exc:
            return error(400, str(exc))

    return Starlette(
        routes=[Route("/healthz", healthz, methods=["GET"]), Route("/v1/diamond/run", diamond_run, methods=["POST"])]
    )
