"""`create_app(settings)`: the gateway as one ASGI app, with no module-level state."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import Route

from lockgate.config import Settings
from lockgate.gateway._app import Gateway
from lockgate.store import Store


def create_app(settings: Settings, *, store: Store | None = None) -> Starlette:
    """The gateway as an ASGI app (serve it with uvicorn: ``lockgate serve``)."""
    gateway = Gateway(settings, store=store)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", gateway.chat_completions, methods=["POST"]),
            Route("/v1/embeddings", gateway.embeddings, methods=["POST"]),
            Route("/v1/models", gateway.models, methods=["GET"]),
            Route("/healthz", gateway.healthz, methods=["GET"]),
            Route("/readyz", gateway.readyz, methods=["GET"]),
            Route("/metrics", gateway.prometheus, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app
