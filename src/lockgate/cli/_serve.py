"""`lockgate serve`: the OpenAI-compatible gateway under uvicorn."""

from __future__ import annotations

import typer

from lockgate.cli._common import err, state


def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="Interface (default: gateway.host)."),
    port: int | None = typer.Option(None, "--port", "-p", help="Port (default: gateway.port)."),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
) -> None:
    """Serve the gateway: POST /v1/chat/completions (streaming too), /v1/embeddings,
    GET /v1/models, /healthz, /readyz, /metrics.

    Clients use any OpenAI SDK with base_url http://HOST:PORT/v1 and a key from
    `lockgate keys create`. SIGTERM or Ctrl-C drains the trace writer before exiting:
    no trace is lost.

    Example: lockgate serve --port 8080
    """
    import uvicorn

    from lockgate.gateway import create_app

    settings = state(ctx).settings
    config = settings.gateway
    bind_host, bind_port = host or config.host, port if port is not None else config.port
    app = create_app(settings)
    err.print(
        f"lockgate gateway on http://{bind_host}:{bind_port}/v1 "
        f"(database {settings.db_url.split('@')[-1]}); Ctrl-C to stop"
    )
    uvicorn.run(
        app,
        host=bind_host,
        port=bind_port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=30,
    )
