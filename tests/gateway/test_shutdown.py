"""No trace is lost across shutdown: 10,000 requests, SIGTERM, count."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from lockgate.config import load_settings
from lockgate.store import Store
from lockgate.store._tables import traces
from lockgate.testing import gateway_process, upstream_process

pytestmark = pytest.mark.slow

REQUESTS = 10_000


def test_sigterm_drains_every_trace(tmp_path: Path) -> None:
    with (
        upstream_process(default_reply="ok") as upstream,
        gateway_process(upstream, tmp_path) as gateway,
    ):
        statuses = asyncio.run(_hammer(gateway.url, gateway.api_key))
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says so.
    assert gateway.returncode in (0, -signal.SIGTERM), gateway.stderr
    assert "Traceback" not in gateway.stderr
    assert statuses == {200: REQUESTS}
    store = Store.open(load_settings(cwd=tmp_path))
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
