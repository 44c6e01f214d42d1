"""`create_app(settings)`: the gateway as one ASGI app, with no module-level state.

The app is a plain ASGI callable: a table of ``(method, path)`` to handler, the lifespan
protocol, and a last-resort 500. Starlette's application stack (error middleware,
exception middleware, router, per-route wrapper) cost about 10% of the gateway's CPU per
request in a profile at 64 clients, and added nothing: every handler answers its own
errors in OpenAI's shape. Handlers still take Starlette `Request`s and return Starlette
`Response`s.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from lockgate.config import Settings
from lockgate.gateway._app import Gateway
from lockgate.gateway._openai_io import GatewayError
from lockgate.store import Store

__all__ = ["GatewayApp", "create_app"]

log = logging.getLogger("lockgate.gateway")

Handler = Callable[[Request], Awaitable[Response]]
_JSON = "application/json"


class GatewayApp:
    """The ASGI app around one `Gateway` (reachable as ``app.gateway``).

    Unknown paths get a 404 and known paths with the wrong method a 405 (with ``Allow``),
    both in OpenAI's error shape.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): gateway.chat_completions,
            ("POST", "/v1/embeddings"): gateway.embeddings,
            ("GET", "/v1/models"): gateway.models,
            ("GET", "/healthz"): gateway.healthz,
            ("GET", "/readyz"): gateway.readyz,
            ("GET", "/metrics"): gateway.prometheus,
        }
        self._methods: dict[str, list[str]] = {}
        for method, path in self._routes:
            self._methods.setdefault(path, []).append(method)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            response = await self._respond(scope, receive)
            await response(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1003, "reason": "HTTP only"})

    async def _respond(self, scope: Scope, receive: Receive) -> Response:
        method: str = scope["method"]
        path: str = scope["path"]
        handler = self._routes.get((method, path))
        if handler is None and method == "HEAD":
            handler = self._routes.get(("GET", path))
        if handler is None:
            return self._no_route(method, path)
        try:
            return await handler(Request(scope, receive))
        except Exception:  # handlers answer their own errors; this is a bug's last stop
            log.exception("unhandled error answering %s %s", method, path)
            error = GatewayError(500, "internal error", kind="server_error")
            return Response(error.body(), status_code=500, media_type=_JSON)

    def _no_route(self, method: str, path: str) -> Response:
        allowed = self._methods.get(path)
        if allowed is None:
            known = ", ".join(sorted({p for _, p in self._routes}))
            error = GatewayError(
                404, f"no such endpoint: {path} (the gateway serves {known})", code="not_found"
            )
            return Response(error.body(), status_code=404, media_type=_JSON)
        error = GatewayError(
            405,
            f"{method} is not allowed on {path}; use {', '.join(allowed)}",
            code="method_not_allowed",
        )
        headers = {"allow": ", ".join(allowed)}
        return Response(error.body(), status_code=405, media_type=_JSON, headers=headers)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.gateway.start()
                except Exception as exc:
                    log.exception("the gateway failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.gateway.stop()
                except Exception as exc:
                    log.exception("the gateway failed to stop cleanly")
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(settings: Settings, *, store: Store | None = None) -> GatewayApp:
    """The gateway as an ASGI app (serve it with uvicorn: ``lockgate serve``)."""
    return GatewayApp(Gateway(settings, store=store))
