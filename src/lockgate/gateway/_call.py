"""One request as the gateway sees it: filled in as it goes, it becomes the response's
``x-lockgate-*`` headers, the trace row and the metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from lockgate.gateway._resolve import Target
from lockgate.gateway._traces import TraceRecord
from lockgate.providers import ChatResult, Usage

__all__ = ["Call"]


@dataclass
class Call:
    """Everything known about one request."""

    trace_id: str
    started: float
    endpoint: str = "chat.completions"
    tenant: str | None = None
    key_id: str | None = None
    target: Target | None = None
    status: int = 200
    error: str | None = None
    upstream_s: float = 0.0
    result: ChatResult | None = None
    cache: str | None = None
    ttft_s: float | None = None
    stream: bool = False
    user: str | None = None
    tenant_limits: Any = None
    key_limits: Any = None
    input_tokens: int | None = None  # counted once while fitting, reused for the reservation
    relayed_chars: int = 0  # streamed answer text sent to the client so far
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def usage(self) -> Usage:
        return self.result.usage if self.result is not None else Usage()

    @property
    def cost_usd(self) -> Decimal | None:
        """The upstream's cost; 0 for a cache hit; None when unknown or not reached."""
        if self.result is not None:
            return self.result.cost.usd
        return Decimal(0) if self.cache == "hit" else None

    def headers(self) -> dict[str, str]:
        """The ``x-lockgate-*`` headers of the answer, as of now."""
        headers = {"x-lockgate-trace-id": self.trace_id}
        if self.cache:
            headers["x-lockgate-cache"] = self.cache
        if self.cost_usd is not None:
            headers["x-lockgate-cost-usd"] = f"{self.cost_usd:f}"
        overhead = (time.perf_counter() - self.started - self.upstream_s) * 1000
        headers["x-lockgate-overhead-ms"] = f"{overhead:.3f}"
        return headers

    def trace_record(self, elapsed_s: float) -> TraceRecord:
        """The trace row of the request, `elapsed_s` after it started."""
        usage, target, result = self.usage, self.target, self.result
        return TraceRecord(
            id=self.trace_id,
            at=datetime.now(UTC),
            tenant=self.tenant,
            key_id=self.key_id,
            endpoint=self.endpoint,
            route=target.plan.route if target else None,
            prompt_ref=target.prompt_ref if target else None,
            requested_model=target.requested if target else None,
            resolved_model=result.resolved.ref if result is not None else None,
            status=self.status,
            error=self.error,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_tokens=usage.cached_input_tokens,
            tokens_estimated=usage.estimated,
            cost_usd=self.cost_usd,
            latency_ms=elapsed_s * 1000,
            ttft_ms=self.ttft_s * 1000 if self.ttft_s is not None else None,
            overhead_ms=(elapsed_s - self.upstream_s) * 1000,
            cache=self.cache,
            stream=self.stream,
            user=self.user,
            details=self.details,
        )
