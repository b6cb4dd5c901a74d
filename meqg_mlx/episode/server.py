"""Diamond episodes over HTTP (`meqg serve`): a Starlette app that holds against its clients.

POST /v1/diamond/run takes an episode request (docs/design.md, HTTP API); GET /healthz
says what is loaded. Episodes share one model, so they run one at a time in a worker
thread while the event loop keeps accepting requests; each response reports the
seconds it waited in `queue_seconds`.

What a client cannot do: reach a non-loopback server without its token; use the
python tool unless the server allows it; loosen the server's limits (`request.py`);
send a body over `max_body_bytes` (counted while it arrives), JSON nested deeper
than `max_json_depth`, numbers longer than `max_number_digits` or lone surrogates;
hold a connection by sending slowly (headers and body each have a deadline); queue
more than `max_queue` episodes (503); keep a queue slot after leaving (a client that
disconnects cancels its episode: one still waiting gives its slot back at once, a running
one stops before its next step). Every error is a one-line JSON object.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, MeqgError
from .budget import Budget

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


@dataclass(frozen=True)
class ServerLimits:
    token: str | None = None  # when set, every request carries `Authorization: Bearer <token>`
    allow_python: bool = False
    max_queue: int = 8  # episodes waiting or running
    max_body_bytes: int = 1 << 20
    body_timeout_s: float = 10.0
    header_timeout_s: float = 10.0
    max_json_depth: int = 32
    max_number_digits: int = 100
    budget: Budget = field(default_factory=lambda: Budget(seconds=60.0, max_flops=1e13, max_kv_bytes=2**30))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_body(raw: bytes, limits: ServerLimits) -> object:
    """The request body as JSON, refused (InputError) before it can cost the parser much."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"the body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRING.sub('""', text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    if deepest > limits.max_json_depth:
        raise InputError(f"the body nests {deepest} levels deep; the limit is {limits.max_json_depth}")

    def number(kind):
        def parse(literal: str):
            if len(literal) > limits.max_number_digits:
                raise InputError(
                    f"a number in the body has {len(literal)} digits; the limit is {limits.max_number_digits}"
                )
            return kind(literal)

        return parse

    def constant(name: str):
        raise InputError(f"the body holds {name}, which is not JSON")

    try:
        body = json.loads(text, parse_int=number(int), parse_float=number(float), parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"the body is not JSON ({exc})") from None
    _check_strings(body)
    return body


def _check_strings(value: object) -> None:
    for text in value.keys() if isinstance(value, dict) else [value] if isinstance(value, str) else []:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError("the body holds a lone surrogate (\\ud800-\\udfff) in a string") from None
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            _check_strings(item)


def create_app(engine, run: Path, limits: ServerLimits):
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from ..runs import RunDir
    from ..telemetry import json_safe
    from .request import EpisodeRequest

    lock = threading.Lock()
    run_id = RunDir(run).read_meta()["run_id"]
    queued = 0

    def error(status: int, reason: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": reason}, status_code=status, headers=headers)

    def authorized(request) -> bool:
        if limits.token is None:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {limits.token}".encode())

    async def read_body(request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise HTTPException(413, f"the body has {declared} bytes; the limit is {limits.max_body_bytes}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise HTTPException(413, f"the body is over {limits.max_body_bytes} bytes, the limit")
            chunks.append(chunk)
        return b"".join(chunks)

    async def healthz(request):
        if not authorized(request):
            return error(401, "this server needs Authorization: Bearer <token>")
        return JSONResponse(
            {
                "status": "ok",
                "run": str(run),
                "run_id": run_id,
                "store": engine.store.uri,
                "concepts": engine.store.count(),
                "inverter": engine.corrector is not None,
                "python": limits.allow_python,
                "queued": queued,
            }
        )

    def episode(parsed: EpisodeRequest, arrived: float, cancelled: threading.Event) -> dict | None:
        """The episode's answer once the model is free; None when its client left first."""
        while not lock.acquire(timeout=0.05):
            if cancelled.is_set():
                return None
        try:
            waited = time.perf_counter() - arrived
            response = engine.with_config(parsed.config).run(
                parsed.prompt,
                parsed.tools,
                parsed.budget,
                parsed.telemetry,
                relation=parsed.relation,
                cancelled=cancelled,
            )
        finally:
            lock.release()
        return {"model": run_id, **response, "queue_seconds": waited}  # one run answers, whatever was asked

    async def client_left(request) -> None:
        """Returns when the client disconnects (the body is read: the next message says so)."""
        while (await request.receive())["type"] != "http.disconnect":
            pass

    async def diamond_run(request):
        nonlocal queued
        arrived = time.perf_counter()
        if not authorized(request):
            return error(401, "this server needs Authorization: Bearer <token>")
        try:
            raw = await asyncio.wait_for(read_body(request), limits.body_timeout_s)
        except asyncio.TimeoutError:
            return error(408, f"the body did not arrive within {limits.body_timeout_s:g} s")
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is left to read it
        try:
            parsed = EpisodeRequest.from_json(parse_body(raw, limits), engine.config, limits.budget)
        except MeqgError as exc:
            return error(400, str(exc))
        if "python" in parsed.tools and not limits.allow_python:
            return error(403, "the python tool is off on this server (start it with --allow-python)")
        if queued >= limits.max_queue:
            return error(503, f"{queued} episodes are queued, the limit; retry later", {"Retry-After": "1"})
        queued += 1
        cancelled = threading.Event()
        job = asyncio.ensure_future(run_in_threadpool(episode, parsed, arrived, cancelled))
        left = asyncio.ensure_future(client_left(request))
        try:
            await asyncio.wait({job, left}, return_when=asyncio.FIRST_COMPLETED)
            if not job.done():
                cancelled.set()
                await asyncio.wait({job})  # at once while it waited; before its next step while it ran
                job.exception()  # an error of an answer nobody reads: retrieved, not reported
                return Response(status_code=499)  # nginx's "client closed request": in the log, read by nobody
            answer = job.result()
            request.state.queue_seconds = answer["queue_seconds"]
            return JSONResponse(json_safe(answer))
        except MeqgError as exc:
            return error(400, str(exc))
        finally:
            left.cancel()
            queued -= 1

    async def http_error(request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail).splitlines()[0])

    async def server_error(request, exc: Exception):
        print(f"meqg serve: {request.url.path}: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return error(500, f"internal error ({type(exc).__name__}); the server log has a line on it")

    app = Starlette(
        routes=[Route("/healthz", healthz, methods=["GET"]), Route("/v1/diamond/run", diamond_run, methods=["POST"])],
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    return RequestLog(app)


class RequestLog:
    """One line per request on stderr, as servers log: method, path, status, seconds and, for an
    episode, how long it waited for the model."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [0]
        state = scope.setdefault("state", {})

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds, waited = time.perf_counter() - started, state.get("queue_seconds")
            queue = "" if waited is None else f" (queued {waited:.3f} s)"
            line = f"meqg serve: {scope['method']} {scope['path']} {status[0] or '-'} {seconds:.3f} s{queue}"
            print(line, file=sys.stderr, flush=True)


def listening_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound and listening before anything is loaded: a port in use is one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT is no conflict
    try:
        listener.bind((host, port))
        listener.listen(2048)
    except OSError as exc:
        listener.close()
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (choose another --port)") from None
    return listener


def serve_app(app, listener: socket.socket, limits: ServerLimits) -> None:
    """uvicorn on `app` at `listener` (`listening_socket`), with a deadline for each request's headers
    (uvicorn's h11 has none)."""
    import uvicorn
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadline(H11Protocol):
        """Closes a connection whose next request's headers are not in within header_timeout_s."""

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def _arm(self) -> None:
            self.loop.call_later(limits.header_timeout_s, self._drop_if_stalled, self.cycle)

        def _drop_if_stalled(self, cycle) -> None:
            if self.cycle is cycle and not self.transport.is_closing():
                self.transport.close()

    uvicorn.Server(uvicorn.Config(app, log_level="warning", http=HeaderDeadline)).run(sockets=[listener])
