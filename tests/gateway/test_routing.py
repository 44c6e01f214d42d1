"""Routing: fallbacks, retries, circuit breakers and the auto route, against two scripted
upstreams on real sockets acting as two deployments."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from lockgate.config import CircuitBreakerConfig, Settings, load_settings
from lockgate.errors import (
    AuthError,
    ContextWindowExceeded,
    ProviderError,
    RateLimited,
    Timeout,
    UpstreamError,
)
from lockgate.gateway._routing import (
    Attempt,
    CircuitBreaker,
    RoutedStream,
    RoutePlan,
    Router,
    counts_against_deployment,
)
from lockgate.providers import Client
from lockgate.testing import Rule, ScriptedUpstream

A = "a/alpha-model"
B = "b/beta-model"
GUARDED = "a/guarded-model"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def up_a() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream(default_reply="from a") as up:
        yield up


@pytest.fixture(scope="module")
def up_b() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream(default_reply="from b") as up:
        yield up


@pytest.fixture
def settings(up_a: ScriptedUpstream, up_b: ScriptedUpstream, tmp_path: Path) -> Settings:
    for up in (up_a, up_b):
        up.set_rules([])
        up.reset()

    def provider(up: ScriptedUpstream) -> dict[str, Any]:
        # The router does the retrying; the client's own retries are off.
        return {
            "type": "openai",
            "base_url": up.url + "/v1",
            "max_retries": 0,
            "retry_base_delay": 0.01,
            "retry_max_delay": 2.0,
        }

    return load_settings(
        home=tmp_path,
        providers={"a": provider(up_a), "b": provider(up_b)},
        routes={
            "main": {"deployments": [A, B], "retries": 1, "timeout_s": 0.5},
            "guarded": {
                "deployments": [GUARDED, B],
                "retries": 0,
                "circuit_breaker": {"failures": 2, "cooldown_s": 10},
            },
            "cheap": {"deployments": [A]},
            "smart": {"deployments": [B]},
            "auto": {"auto": {"easy": "cheap", "hard": "smart", "max_easy_tokens": 40}},
        },
        cache={"enabled": False},
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def delays() -> list[float]:
    return []


@pytest.fixture
async def router(
    settings: Settings, clock: FakeClock, delays: list[float]
) -> AsyncIterator[Router]:
    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        await asyncio.sleep(seconds)

    async with Client(settings) as client:
        yield Router(settings, client, breaker_clock=clock, sleep=sleep)


def ask(text: str, system: str = "Be brief.") -> list[dict[str, Any]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


def outcomes(attempts: list[Attempt]) -> list[tuple[str, str]]:
    return [(a.deployment, a.outcome) for a in attempts]


# -- fallbacks -----------------------------------------------------------------------------


async def test_a_healthy_first_deployment_answers(router: Router, up_b: ScriptedUpstream) -> None:
    plan = router.plan("main", ask("hello"), {})
    assert plan == RoutePlan("main", [A, B], {})
    routed = await router.complete(plan, ask("hello"), {"temperature": 0})
    assert (routed.deployment, routed.result.text) == (A, "from a")
    assert outcomes(routed.attempts) == [(A, "ok")]
    assert up_b.requests == []


async def test_429_is_retried_after_retry_after_then_falls_back(
    router: Router, up_a: ScriptedUpstream, delays: list[float]
) -> None:
    up_a.set_rules([Rule(status=429, retry_after=0.2)])
    routed = await router.complete(router.plan("main", ask("hi"), {}), ask("hi"), {})
    assert (routed.deployment, routed.result.text) == (B, "from b")
    assert outcomes(routed.attempts) == [(A, "error"), (A, "error"), (B, "ok")]
    assert routed.attempts[0].error is not None and "RateLimited" in routed.attempts[0].error
    assert len(up_a.requests) == 2  # one retry (route retries: 1), then the fallback
    assert delays and delays[0] >= 0.2  # Retry-After honoured


async def test_a_retry_that_succeeds_needs_no_fallback(
    router: Router, up_a: ScriptedUpstream, up_b: ScriptedUpstream, delays: list[float]
) -> None:
    up_a.set_rules([Rule(status=429, retry_after=0.1, times=1)])
    routed = await router.complete(router.plan("main", ask("hi"), {}), ask("hi"), {})
    assert routed.deployment == A
    assert outcomes(routed.attempts) == [(A, "error"), (A, "ok")]
    assert delays[0] >= 0.1
    assert up_b.requests == []


async def test_a_retry_after_beyond_the_cap_falls_back_at_once(
    router: Router, up_a: ScriptedUpstream, delays: list[float]
) -> None:
    up_a.set_rules([Rule(status=429, retry_after=60)])
    routed = await router.complete(router.plan("main", ask("hi"), {}), ask("hi"), {})
    assert routed.deployment == B
    assert outcomes(routed.attempts) == [(A, "error"), (B, "ok")]
    assert delays == []


async def test_500_falls_back(router: Router, up_a: ScriptedUpstream) -> None:
    up_a.set_rules([Rule(status=500)])
    routed = await router.complete(router.plan("main", ask("hi"), {}), ask("hi"), {})
    assert routed.result.text == "from b"
    assert outcomes(routed.attempts) == [(A, "error"), (A, "error"), (B, "ok")]
    assert all("UpstreamError" in (a.error or "") for a in routed.attempts[:2])


async def test_a_slow_deployment_times_out_and_falls_back(
    router: Router, up_a: ScriptedUpstream
) -> None:
    up_a.set_rules([Rule(delay=3.0)])
    loop = asyncio.get_running_loop()
    started = loop.time()
    routed = await router.complete(router.plan("main", ask("hi"), {}), ask("hi"), {})
    assert routed.result.text == "from b"
    assert outcomes(routed.attempts) == [(A, "error"), (A, "error"), (B, "ok")]
    assert "Timeout" in (routed.attempts[0].error or "")
    assert all(0.4 < a.elapsed_s < 1.0 for a in routed.attempts[:2])  # timeout_s: 0.5
    assert loop.time() - started < 2.5


async def test_a_context_window_error_falls_back_without_retrying(
    router: Router, up_a: ScriptedUpstream
) -> None:
    up_a.set_rules([Rule(status=400, error_code="context_length_exceeded")])
    routed = await router.complete(router.plan("main", ask("hi"), {}), ask("hi"), {})
    assert routed.deployment == B
    assert outcomes(routed.attempts) == [(A, "error"), (B, "ok")]
    assert "ContextWindowExceeded" in (routed.attempts[0].error or "")
    assert len(up_a.requests) == 1
    # The server answered: a user's long prompt does not count against the deployment.
    assert router.breaker(A).state(A) == "closed"


@pytest.mark.parametrize(("status", "error"), [(401, AuthError), (400, ProviderError)])
async def test_errors_no_deployment_would_answer_differently_are_raised_at_once(
    router: Router,
    up_a: ScriptedUpstream,
    up_b: ScriptedUpstream,
    status: int,
    error: type[ProviderError],
) -> None:
    up_a.set_rules([Rule(status=status)])
    attempts: list[Attempt] = []
    with pytest.raises(error) as raised:
        await router.complete(router.plan("main", ask("hi"), {}), ask("hi"), {}, attempts=attempts)
    assert not isinstance(raised.value, UpstreamError | RateLimited | Timeout)
    assert outcomes(attempts) == [(A, "error")]
    assert up_b.requests == []


async def test_when_everything_fails_the_last_error_is_raised(
    router: Router, up_a: ScriptedUpstream, up_b: ScriptedUpstream
) -> None:
    up_a.set_rules([Rule(status=429, retry_after=60)])
    up_b.set_rules([Rule(status=503, error_message="b is down")])
    attempts: list[Attempt] = []
    with pytest.raises(UpstreamError, match="b is down") as raised:
        await router.complete(router.plan("main", ask("hi"), {}), ask("hi"), {}, attempts=attempts)
    assert outcomes(attempts) == [(A, "error"), (B, "error"), (B, "error")]
    assert any("routing attempts: a/alpha-model error" in n for n in raised.value.__notes__)


async def test_a_plain_model_is_a_one_deployment_plan(router: Router) -> None:
    plan = router.plan(B, ask("hi"), {})
    assert plan == RoutePlan(None, [B], {})
    routed = await router.complete(plan, ask("hi"), {})
    assert routed.result.text == "from b"


# -- circuit breaker -----------------------------------------------------------------------


async def test_breaker_opens_skips_probes_after_cooldown_and_closes(
    router: Router, up_a: ScriptedUpstream, clock: FakeClock
) -> None:
    up_a.set_rules([Rule(status=500)])
    plan = router.plan("guarded", ask("hi"), {})
    for _ in range(2):  # failures: 2 → open
        routed = await router.complete(plan, ask("hi"), {})
        assert outcomes(routed.attempts) == [(GUARDED, "error"), (B, "ok")]
    breaker = router.breaker(GUARDED)
    assert breaker.state(GUARDED) == "open"
    calls = len(up_a.requests)

    routed = await router.complete(plan, ask("hi"), {})
    assert outcomes(routed.attempts) == [(GUARDED, "skipped"), (B, "ok")]
    assert routed.attempts[0].error == "circuit open"
    assert len(up_a.requests) == calls  # not even tried

    clock.now += 10  # cool-down over: one probe, which fails and re-opens
    assert breaker.state(GUARDED) == "half-open"
    routed = await router.complete(plan, ask("hi"), {})
    assert outcomes(routed.attempts) == [(GUARDED, "error"), (B, "ok")]
    assert len(up_a.requests) == calls + 1
    assert breaker.state(GUARDED) == "open"

    clock.now += 10
    up_a.set_rules([])  # recovered: the probe succeeds and closes the breaker
    routed = await router.complete(plan, ask("hi"), {})
    assert outcomes(routed.attempts) == [(GUARDED, "ok")]
    assert breaker.state(GUARDED) == "closed"


async def test_when_every_breaker_is_open_the_error_says_so(
    router: Router, up_a: ScriptedUpstream, up_b: ScriptedUpstream
) -> None:
    for deployment in (GUARDED, B):
        for _ in range(5):
            router.breaker(deployment).record(deployment, ok=False)
    attempts: list[Attempt] = []
    with pytest.raises(UpstreamError, match="circuit is open") as raised:
        plan = router.plan("guarded", ask("hi"), {})
        await router.complete(plan, ask("hi"), {}, attempts=attempts)
    assert raised.value.status == 503
    assert outcomes(attempts) == [(GUARDED, "skipped"), (B, "skipped")]
    assert up_a.requests == up_b.requests == []


def test_breaker_half_open_admits_one_probe_at_a_time() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(CircuitBreakerConfig(failures=1, cooldown_s=5), clock=clock)
    breaker.record("p/m", ok=False)
    assert not breaker.allow("p/m")
    clock.now += 5
    assert breaker.allow("p/m")  # the probe
    assert not breaker.allow("p/m")  # no second caller while it is out
    assert breaker.allow("other/m")  # other deployments are unaffected
    clock.now += 5
    assert breaker.allow("p/m")  # the first probe never reported: another may go
    breaker.record("p/m", ok=True)
    assert breaker.state("p/m") == "closed"
    assert breaker.allow("p/m") and breaker.allow("p/m")


def test_breaker_opens_on_the_failure_ratio_within_the_window() -> None:
    clock = FakeClock()
    config = CircuitBreakerConfig(failures=100, failure_ratio=0.5, window_s=10, min_requests=4)
    breaker = CircuitBreaker(config, clock=clock)
    for ok in (True, False, True):
        breaker.record("p/m", ok=ok)
        clock.now += 1
    assert breaker.state("p/m") == "closed"  # 3 calls: below min_requests
    breaker.record("p/m", ok=False)  # 2 of 4 failed
    assert breaker.state("p/m") == "open"

    other = CircuitBreaker(config, clock=clock)
    for _ in range(6):
        other.record("p/m", ok=True)
    clock.now += 11  # those six successes leave the window and no longer dilute it
    for ok in (True, False, True):
        other.record("p/m", ok=ok)
    assert other.state("p/m") == "closed"
    other.record("p/m", ok=False)  # 2 of the 4 calls in the window
    assert other.state("p/m") == "open"


def test_which_errors_count_against_a_deployment() -> None:
    assert counts_against_deployment(RateLimited("slow down"))
    assert counts_against_deployment(Timeout("late"))
    assert counts_against_deployment(UpstreamError("502"))
    assert not counts_against_deployment(AuthError("bad key"))
    assert not counts_against_deployment(ContextWindowExceeded("too long"))
    assert not counts_against_deployment(ProviderError("400"))


# -- the auto route ------------------------------------------------------------------------


async def test_auto_sends_an_easy_request_to_the_cheap_route(router: Router) -> None:
    plan = router.plan("auto", ask("What are your opening hours?"), {})
    assert (plan.route, plan.deployments) == ("cheap", [A])
    assert plan.decision["verdict"] == "easy"
    assert plan.decision["auto_route"] == "auto"
    assert plan.decision["target"] == "cheap"
    assert plan.decision["input_tokens"] <= 40
    routed = await router.complete(plan, ask("What are your opening hours?"), {})
    assert routed.result.text == "from a"


@pytest.mark.parametrize(
    ("text", "params", "reason"),
    [
        ("Please DEBUG this stack trace", {}, "keyword 'debug'"),
        ("Explain it step by step", {}, "keyword 'step by step'"),
        (" ".join(["word"] * 200), {}, "> max_easy_tokens 40"),
        ("weather?", {"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        (
            "name?",
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "JSON schema",
        ),
    ],
)
async def test_auto_sends_hard_requests_to_the_capable_route(
    router: Router, text: str, params: dict[str, Any], reason: str
) -> None:
    plan = router.plan("auto", ask(text), params)
    assert (plan.route, plan.deployments) == ("smart", [B])
    assert plan.decision["verdict"] == "hard"
    assert reason in plan.decision["reason"]


async def test_auto_keywords_match_whole_words_in_the_last_user_message(router: Router) -> None:
    messages = [
        {"role": "system", "content": "You debug code."},  # not the user's words
        {"role": "user", "content": "How can I improve my score?"},  # "prove" inside a word
    ]
    assert router.plan("auto", messages, {}).decision["verdict"] == "easy"


# -- streaming -----------------------------------------------------------------------------


async def collect(
    router: Router, plan: RoutePlan, messages: list[dict[str, Any]], sink: RoutedStream
) -> list[str]:
    pieces = []
    async for chunk in router.stream(plan, messages, {"stream": True}, into=sink):
        if chunk.delta:
            pieces.append(chunk.delta)
    return pieces


@pytest.mark.parametrize("fault", [Rule(status=500), Rule(drop_after_chunks=0)])
async def test_a_stream_falls_back_before_its_first_chunk(
    router: Router, up_a: ScriptedUpstream, fault: Rule
) -> None:
    up_a.set_rules([fault])
    plan = router.plan("main", ask("hi"), {})
    sink = RoutedStream(plan)
    assert "".join(await collect(router, plan, ask("hi"), sink)) == "from b"
    assert sink.deployment == B
    assert outcomes(sink.attempts) == [(A, "error"), (A, "error"), (B, "ok")]
    assert sink.result is not None and sink.result.text == "from b"


async def test_a_stream_dropped_after_chunks_propagates_without_fallback(
    router: Router, up_a: ScriptedUpstream, up_b: ScriptedUpstream
) -> None:
    up_a.set_rules([Rule(reply="one two three four", drop_after_chunks=2)])
    plan = router.plan("main", ask("hi"), {})
    sink = RoutedStream(plan)
    received: list[str] = []
    with pytest.raises(UpstreamError, match="ended early"):
        async for chunk in router.stream(plan, ask("hi"), {}, into=sink):
            received.append(chunk.delta)
    assert "".join(received) == "one two "
    assert sink.deployment == A
    assert outcomes(sink.attempts) == [(A, "error")]
    assert sink.result is None
    assert up_b.requests == []
    assert len(up_a.requests) == 1  # no retry either: the client already has chunks


async def test_a_stream_where_everything_fails_raises_the_last_error(
    router: Router, up_a: ScriptedUpstream, up_b: ScriptedUpstream
) -> None:
    up_a.set_rules([Rule(status=500)])
    up_b.set_rules([Rule(status=429, retry_after=60)])
    plan = router.plan("main", ask("hi"), {})
    sink = RoutedStream(plan)
    with pytest.raises(RateLimited):
        await collect(router, plan, ask("hi"), sink)
    assert outcomes(sink.attempts) == [(A, "error"), (A, "error"), (B, "error")]
    assert sink.deployment is None
