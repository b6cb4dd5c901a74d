"""`meqg app --web`: the same app served to a browser by textual-serve.

Each browser tab gets its own `meqg app` process behind a websocket (textual-serve's
design). Off loopback a token is required, as for `meqg serve`: the first page is opened
as /?token=TOKEN, which sets a cookie that the page's websocket and static files carry.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from textual_serve.server import Server

TOKEN_COOKIE = "meqg_app_token"


class AppServer(Server):
    def __init__(self, command: str, host: str, port: int, token: str | None = None):
        super().__init__(command, host=host, port=port, title="meqg app")
        self.token = token

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        if self.token is not None:
            app.middlewares.append(self._require_token)
        return app

    @web.middleware
    async def _require_token(self, request: web.Request, handler):
        given = request.query.get("token") or request.cookies.get(TOKEN_COOKIE) or ""
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return web.Response(status=401, text="meqg app needs its token: open /?token=TOKEN\n")
        response = await handler(request)
        if "token" in request.query and isinstance(response, web.Response):
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="Strict")
        return response
