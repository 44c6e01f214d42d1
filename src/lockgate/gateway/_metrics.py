"""Prometheus metrics of the gateway, served on ``/metrics``.

Each `GatewayMetrics` owns its own registry, so two apps in one process (tests, a
gateway and an admin app) never share or collide on a series. Labels carry only bounded
values: route names and models from configuration, HTTP statuses, cache results,
deployments. Tenant and user ids are never labels (one series per customer is how a
Prometheus server falls over); per-tenant numbers live in the traces.

The per-request methods run on the hot path, so they look the labelled series up once
and keep the bound children in a dict: a request costs one dict lookup and a handful
of increments.

Series:
    ``lockgate_requests_total{route,status}``
    ``lockgate_tokens_total{direction,model}`` (direction: input | output)
    ``lockgate_cost_usd_total{model}``
    ``lockgate_request_duration_seconds`` (histogram)
    ``lockgate_overhead_seconds`` (histogram: time spent in lockgate, upstream excluded)
    ``lockgate_time_to_first_token_seconds`` (histogram, streaming requests)
    ``lockgate_cache_requests_total{result}`` (hit | miss | semantic | bypass)
    ``lockgate_trace_queue_dropped_total``
    ``lockgate_upstream_errors_total{deployment,kind}``
    ``lockgate_circuit_open{deployment}`` (gauge: 1 open, 0 closed)
    ``lockgate_event_loop_lag_seconds`` (histogram: how late a 10 ms timer fired; a
    sample over 20 ms means every request in flight waited that long)
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

__all__ = [
    "DURATION_BUCKETS",
    "LAG_BUCKETS",
    "OVERHEAD_BUCKETS",
    "TTFT_BUCKETS",
    "GatewayMetrics",
    "watch_event_loop",
]

# fmt: off
# Whole requests: a cached answer in a millisecond to a long generation in two minutes.
DURATION_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
)
# lockgate's own share of a request: the target is well under a millisecond.
OVERHEAD_BUCKETS: Final = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
)
# Streamed answers: the first token from a local model or a hosted one under load.
TTFT_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)
# Event-loop lag: 20 ms is the line a stall must not cross.
LAG_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# fmt: on
LAG_INTERVAL_S: Final = 0.01


class _RequestSeries:
    """The bound children one (route, status, model) combination touches."""

    __slots__ = ("cost", "input_tokens", "output_tokens", "requests")

    def __init__(self, metrics: GatewayMetrics, route: str, status: int, model: str) -> None:
        self.requests = metrics.requests.labels(route=route, status=str(status))
        self.input_tokens = metrics.tokens.labels(direction="input", model=model)
        self.output_tokens = metrics.tokens.labels(direction="output", model=model)
        self.cost = metrics.cost_usd.labels(model=model)


class GatewayMetrics:
    """The gateway's metrics and the registry that exposes them.

    Example:
        >>> metrics = GatewayMetrics()
        >>> metrics.observe_request(
        ...     route="fast", status=200, model="openai/gpt-4o-mini-2024-07-18",
        ...     input_tokens=120, output_tokens=30, cost_usd=0.000036,
        ...     duration_s=0.42, overhead_s=0.0004,
        ... )
        >>> body, content_type = metrics.render()
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "lockgate_requests_total",
            "Requests answered, by route and HTTP status.",
            ["route", "status"],
            registry=r,
        )
        self.tokens = Counter(
            "lockgate_tokens_total",
            "Tokens processed, by direction (input|output) and model.",
            ["direction", "model"],
            registry=r,
        )
        self.cost_usd = Counter(
            "lockgate_cost_usd_total", "Upstream cost in USD, by model.", ["model"], registry=r
        )
        self.duration = Histogram(
            "lockgate_request_duration_seconds",
            "Whole request duration.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "lockgate_overhead_seconds",
            "Time spent in lockgate itself, upstream excluded.",
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "lockgate_time_to_first_token_seconds",
            "Time to the first streamed token.",
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.cache = Counter(
            "lockgate_cache_requests_total", "Cache lookups, by result.", ["result"], registry=r
        )
        self.trace_queue_dropped = Counter(
            "lockgate_trace_queue_dropped_total",
            "Trace rows not written because the trace queue was full.",
            registry=r,
        )
        self.upstream_errors = Counter(
            "lockgate_upstream_errors_total",
            "Failed upstream calls, by deployment and kind.",
            ["deployment", "kind"],
            registry=r,
        )
        self.circuit_open = Gauge(
            "lockgate_circuit_open",
            "1 while the deployment's circuit breaker is open.",
            ["deployment"],
            registry=r,
        )
        self.loop_lag = Histogram(
            "lockgate_event_loop_lag_seconds",
            "How late a periodic 10 ms timer fired: time every request in flight waited.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self._series: dict[tuple[str, int, str], _RequestSeries] = {}
        self._cache_results: dict[str, Counter] = {}
        self._upstream: dict[tuple[str, str], Counter] = {}

    def observe_request(
        self,
        *,
        route: str,
        status: int,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: float | Decimal | None = None,
        duration_s: float,
        overhead_s: float,
        cache: str | None = None,
        ttft_s: float | None = None,
    ) -> None:
        """Record one answered request.

        Args:
            route: the route name from configuration, or the PROVIDER/MODEL requested;
                never a raw string a client made up (that would grow series without bound).
            status: the HTTP status of the answer.
            model: the resolved PROVIDER/MODEL ("" when none was reached).
            cost_usd: the upstream cost; None when unknown (nothing is added).
            cache: hit | miss | semantic | bypass, or None when the cache was not consulted.
            ttft_s: time to the first token of a streamed answer.
        """
        key = (route, status, model)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _RequestSeries(self, route, status, model)
        series.requests.inc()
        if input_tokens:
            series.input_tokens.inc(input_tokens)
        if output_tokens:
            series.output_tokens.inc(output_tokens)
        if cost_usd:
            series.cost.inc(float(cost_usd))
        self.duration.observe(duration_s)
        self.overhead.observe(overhead_s)
        if cache is not None:
            self.observe_cache(cache)
        if ttft_s is not None:
            self.ttft.observe(ttft_s)

    def observe_cache(self, result: str) -> None:
        """Count one cache lookup: hit | miss | semantic | bypass."""
        child = self._cache_results.get(result)
        if child is None:
            child = self._cache_results[result] = self.cache.labels(result=result)
        child.inc()

    def observe_upstream_error(self, deployment: str, kind: str) -> None:
        """Count one failed upstream call (kind: rate_limited, timeout, server_error, …)."""
        key = (deployment, kind)
        child = self._upstream.get(key)
        if child is None:
            child = self._upstream[key] = self.upstream_errors.labels(
                deployment=deployment, kind=kind
            )
        child.inc()

    def set_circuit_open(self, deployment: str, is_open: bool) -> None:
        """Record a circuit breaker opening (True) or closing (False)."""
        self.circuit_open.labels(deployment=deployment).set(1 if is_open else 0)

    def trace_dropped(self, count: int = 1) -> None:
        """Count trace records that missed the trace queue (the writer's ``on_drop``)."""
        self.trace_queue_dropped.inc(count)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition body and its content type for ``GET /metrics``.

        Args:
            accept: the request's Accept header; OpenMetrics is served when asked for,
                the Prometheus text format otherwise.
        """
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


async def watch_event_loop(metrics: GatewayMetrics, stop: asyncio.Event) -> None:
    """Sample the event loop's lag into `metrics` every 10 ms until `stop` is set.

    The cost is one timer wake-up per sample (about 0.2% of a core).
    """
    loop = asyncio.get_running_loop()
    observe = metrics.loop_lag.observe
    while not stop.is_set():
        due = loop.time() + LAG_INTERVAL_S
        await asyncio.sleep(LAG_INTERVAL_S)
        observe(max(0.0, loop.time() - due))
