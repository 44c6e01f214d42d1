"""No trace is lost across shutdown: 10,000 requests, SIGTERM, count."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from lockgate.config import load_settings
from lockgate.governance._tenants import Limits, TenantStore
from lockgate.store import Store
from lockgate.store._tables import traces
from lockgate.testing import upstream_process

pytestmark = pytest.mark.slow

REQUESTS = 10_000


def test_sigterm_drains_every_trace(tmp_path: Path) -> None:
    with upstream_process(default_reply="ok") as upstream:
        (tmp_path / "lockgate.yaml").write_text(
            f"home: home\nproviders:\n  up: {{type: openai, base_url: '{upstream}/v1'}}\n"
            "routes:\n  fast: {deployments: [up/gpt-4o-mini-2024-07-18]}\n"
        )
        settings = load_settings(cwd=tmp_path)
        store = Store.open(settings)
        tenants = TenantStore(store, actor="t")
        tenants.create_tenant("acme", Limits())
        _, secret = tenants.create_key("acme")
        store.close()
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
        server = subprocess.Popen(
            [Path(sys.executable).parent / "lockgate", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_ready(base)
            statuses = asyncio.run(_hammer(base, secret))
        finally:
            server.send_signal(signal.SIGTERM)
            _, err = server.communicate(timeout=60)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says so.
    assert server.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err
    assert statuses == {200: REQUESTS}
    store = Store.open(settings)
    try:
        with store.read() as conn:
            written = conn.execute(sa.select(sa.func.count()).select_from(traces)).scalar_one()
    finally:
        store.close()
    assert written == REQUESTS


async def _hammer(base: str, secret: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    remaining = iter(range(REQUESTS))
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:

        async def worker() -> None:
            for n in remaining:
                response = await client.post(
                    "/v1/chat/completions",
                    headers={"authorization": f"Bearer {secret}"},
                    json={"model": "fast", "messages": [{"role": "user", "content": f"q {n}"}]},
                )
                counts[response.status_code] = counts.get(response.status_code, 0) + 1

        await asyncio.gather(*(worker() for _ in range(32)))
    return counts


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the gateway did not become ready")
