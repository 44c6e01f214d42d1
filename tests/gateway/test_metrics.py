"""Prometheus metrics: names and labels in the exposition, values, independent registries."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lockgate.gateway._metrics import GatewayMetrics, watch_event_loop

MODEL = "openai/gpt-4o-mini-2024-07-18"


def samples(metrics: GatewayMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the rendered exposition, by (name, labels)."""
    body, _ = metrics.render()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(metrics: GatewayMetrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def observe(metrics: GatewayMetrics, **overrides: object) -> None:
    kwargs: dict[str, object] = {
        "route": "fast",
        "status": 200,
        "model": MODEL,
        "input_tokens": 120,
        "output_tokens": 30,
        "cost_usd": 0.000036,
        "duration_s": 0.42,
        "overhead_s": 0.0004,
    }
    kwargs.update(overrides)
    metrics.observe_request(**kwargs)  # type: ignore[arg-type]


def test_every_series_has_its_conventional_name_and_labels() -> None:
    metrics = GatewayMetrics()
    observe(metrics, cache="miss", ttft_s=0.2)
    metrics.observe_upstream_error("openai/gpt-4o-mini-2024-07-18", "rate_limited")
    metrics.set_circuit_open("openai/gpt-4o-mini-2024-07-18", True)
    metrics.trace_dropped()

    body, content_type = metrics.render()
    text = body.decode()

    assert content_type.startswith("text/plain; version=0.0.4")
    for line in (
        "# TYPE lockgate_requests_total counter",
        'lockgate_requests_total{route="fast",status="200"} 1.0',
        "# TYPE lockgate_tokens_total counter",
        f'lockgate_tokens_total{{direction="input",model="{MODEL}"}} 120.0',
        f'lockgate_tokens_total{{direction="output",model="{MODEL}"}} 30.0',
        "# TYPE lockgate_cost_usd_total counter",
        f'lockgate_cost_usd_total{{model="{MODEL}"}} 3.6e-05',
        "# TYPE lockgate_request_duration_seconds histogram",
        'lockgate_request_duration_seconds_bucket{le="0.001"} 0.0',
        'lockgate_request_duration_seconds_bucket{le="120.0"} 1.0',
        "# TYPE lockgate_overhead_seconds histogram",
        'lockgate_overhead_seconds_bucket{le="0.0001"} 0.0',
        'lockgate_overhead_seconds_bucket{le="0.0005"} 1.0',
        'lockgate_overhead_seconds_bucket{le="0.05"} 1.0',
        "# TYPE lockgate_time_to_first_token_seconds histogram",
        "lockgate_time_to_first_token_seconds_count 1.0",
        "# TYPE lockgate_cache_requests_total counter",
        'lockgate_cache_requests_total{result="miss"} 1.0',
        "# TYPE lockgate_trace_queue_dropped_total counter",
        "lockgate_trace_queue_dropped_total 1.0",
        "# TYPE lockgate_upstream_errors_total counter",
        f'lockgate_upstream_errors_total{{deployment="{MODEL}",kind="rate_limited"}} 1.0',
        "# TYPE lockgate_circuit_open gauge",
        f'lockgate_circuit_open{{deployment="{MODEL}"}} 1.0',
    ):
        assert line in text.splitlines(), line
    # no tenant or user label anywhere
    assert "tenant" not in text
    assert "user" not in text


def test_values_add_up_over_requests() -> None:
    metrics = GatewayMetrics()
    observe(metrics, cache="miss")
    observe(metrics, cache="hit", input_tokens=0, output_tokens=0, cost_usd=None)
    observe(metrics, status=429, input_tokens=0, output_tokens=0, cost_usd=None)
    observe(metrics, model="local/qwen2.5-coder-1.5b-instruct", cost_usd=Decimal("0"))
    observe(metrics, cost_usd=Decimal("0.000100"), duration_s=3.0, overhead_s=0.002)
    for _ in range(3):
        metrics.observe_cache("semantic")
    metrics.trace_dropped(5)

    assert value(metrics, "lockgate_requests_total", route="fast", status="200") == 4
    assert value(metrics, "lockgate_requests_total", route="fast", status="429") == 1
    assert value(metrics, "lockgate_tokens_total", direction="input", model=MODEL) == 240
    assert value(metrics, "lockgate_tokens_total", direction="output", model=MODEL) == 60
    cost = value(metrics, "lockgate_cost_usd_total", model=MODEL)
    assert cost is not None
    assert abs(cost - 0.000136) < 1e-12
    assert value(metrics, "lockgate_cost_usd_total", model="local/qwen2.5-coder-1.5b-instruct") == 0
    assert value(metrics, "lockgate_cache_requests_total", result="miss") == 1
    assert value(metrics, "lockgate_cache_requests_total", result="hit") == 1
    assert value(metrics, "lockgate_cache_requests_total", result="semantic") == 3
    assert value(metrics, "lockgate_trace_queue_dropped_total") == 5
    assert value(metrics, "lockgate_request_duration_seconds_count") == 5
    assert value(metrics, "lockgate_request_duration_seconds_bucket", le="0.5") == 4
    assert value(metrics, "lockgate_request_duration_seconds_sum") == pytest.approx(0.42 * 4 + 3.0)
    assert value(metrics, "lockgate_overhead_seconds_bucket", le="0.001") == 4
    assert value(metrics, "lockgate_overhead_seconds_bucket", le="0.0025") == 5
    # no streamed request yet: the histogram exists, empty
    assert value(metrics, "lockgate_time_to_first_token_seconds_count") == 0


def test_the_circuit_gauge_follows_the_breaker() -> None:
    metrics = GatewayMetrics()
    metrics.set_circuit_open("anthropic/claude", True)
    assert value(metrics, "lockgate_circuit_open", deployment="anthropic/claude") == 1
    metrics.set_circuit_open("anthropic/claude", False)
    assert value(metrics, "lockgate_circuit_open", deployment="anthropic/claude") == 0


def test_two_instances_are_independent() -> None:
    first, second = GatewayMetrics(), GatewayMetrics()  # same names: no duplicate error
    observe(first)
    observe(first)
    observe(second, route="smart")

    assert value(first, "lockgate_requests_total", route="fast", status="200") == 2
    assert value(first, "lockgate_requests_total", route="smart", status="200") is None
    assert value(second, "lockgate_requests_total", route="fast", status="200") is None
    assert value(second, "lockgate_requests_total", route="smart", status="200") == 1
    assert first.registry is not second.registry


def test_openmetrics_is_served_when_asked_for() -> None:
    metrics = GatewayMetrics()
    observe(metrics)

    body, content_type = metrics.render("application/openmetrics-text; version=1.0.0")

    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
    assert b'lockgate_requests_total{route="fast",status="200"} 1.0' in body


async def test_event_loop_lag_is_sampled_and_a_blocked_loop_shows() -> None:
    metrics = GatewayMetrics()
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_event_loop(metrics, stop))
    await asyncio.sleep(0.1)
    time.sleep(0.08)  # block the loop the way a synchronous call on the hot path would
    await asyncio.sleep(0.05)
    stop.set()
    await watcher

    samples = {
        sample.labels.get("le"): sample.value
        for family in text_string_to_metric_families(metrics.render()[0].decode())
        if family.name == "lockgate_event_loop_lag_seconds"
        for sample in family.samples
        if sample.name.endswith("_bucket")
    }
    assert samples["+Inf"] >= 5  # one sample per 10 ms
    assert samples["+Inf"] - samples["0.05"] >= 1  # the blocked interval, 70-80 ms late
