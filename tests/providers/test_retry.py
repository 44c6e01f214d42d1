"""The retry policy: what is retried, how long it waits, streams that already started."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockgate.errors import (
    AuthError,
    ContextWindowExceeded,
    ProviderError,
    RateLimited,
    Timeout,
    UpstreamError,
)
from lockgate.providers._retry import (
    RetryPolicy,
    is_retryable,
    stream_with_retries,
    with_retries,
)
from tests.helpers import FakeSleep, collect


def failing(
    errors: list[Exception], result: str = "ok"
) -> tuple[Callable[[], Awaitable[str]], list[int]]:
    """A call that raises `errors` one by one, then returns `result`; and its call counter."""
    calls = [0]
    queue = list(errors)

    async def call() -> str:
        calls[0] += 1
        if queue:
            raise queue.pop(0)
        return result

    return call, calls


def no_jitter() -> float:
    return 0.0


async def test_retries_retryable_errors_with_exponential_backoff() -> None:
    sleep = FakeSleep()
    errors: list[Exception] = [UpstreamError("500"), Timeout("slow"), UpstreamError("502")]
    call, calls = failing(errors)
    seen: list[tuple[int, str, float]] = []
    result = await with_retries(
        call,
        RetryPolicy(max_retries=3, base_delay=0.5, jitter=0.0),
        on_retry=lambda n, e, d: seen.append((n, str(e), d)),
        sleep=sleep,
    )
    assert result == "ok"
    assert calls[0] == 4
    assert sleep.delays == [0.5, 1.0, 2.0]
    assert seen == [(0, "500", 0.5), (1, "slow", 1.0), (2, "502", 2.0)]


async def test_gives_up_after_max_retries_with_the_last_error() -> None:
    sleep = FakeSleep()
    call, calls = failing([UpstreamError(f"fail {i}") for i in range(5)])
    with pytest.raises(UpstreamError, match="fail 2"):
        await with_retries(call, RetryPolicy(max_retries=2), sleep=sleep)
    assert calls[0] == 3
    assert len(sleep.delays) == 2


@pytest.mark.parametrize(
    "error",
    [
        AuthError("bad key", status=401),
        ContextWindowExceeded("too long", status=400),
        ProviderError("bad request", status=400),
        ProviderError("not found", status=404),
    ],
)
async def test_never_retries_what_would_fail_again(error: ProviderError) -> None:
    sleep = FakeSleep()
    call, calls = failing([error])
    with pytest.raises(type(error)) as raised:
        await with_retries(call, RetryPolicy(max_retries=5), sleep=sleep)
    assert raised.value is error
    assert calls[0] == 1
    assert sleep.delays == []


async def test_non_provider_errors_propagate_untouched() -> None:
    call, calls = failing([KeyError("bug")])
    with pytest.raises(KeyError):
        await with_retries(call, RetryPolicy(), sleep=FakeSleep())
    assert calls[0] == 1


async def test_zero_retries_means_one_attempt() -> None:
    call, calls = failing([UpstreamError("once")])
    with pytest.raises(UpstreamError):
        await with_retries(call, RetryPolicy(max_retries=0), sleep=FakeSleep())
    assert calls[0] == 1


async def test_retry_after_sets_a_floor_on_the_wait() -> None:
    sleep = FakeSleep()
    call, _ = failing([RateLimited("slow down", retry_after=1.5), RateLimited("again")])
    await with_retries(
        call,
        RetryPolicy(base_delay=0.1, jitter=0.0),
        sleep=sleep,
    )
    # First wait honours Retry-After over the 0.1 s backoff; the second has none to honour.
    assert sleep.delays == [1.5, 0.2]


async def test_retry_after_beyond_max_delay_gives_up_at_once() -> None:
    sleep = FakeSleep()
    error = RateLimited("come back in an hour", retry_after=3600.0)
    call, calls = failing([error])
    with pytest.raises(RateLimited) as raised:
        await with_retries(
            call,
            RetryPolicy(max_retries=5, max_delay=30.0),
            sleep=sleep,
        )
    assert raised.value is error
    assert calls[0] == 1
    assert sleep.delays == []


def test_backoff_is_capped_by_max_delay() -> None:
    policy = RetryPolicy(max_retries=20, base_delay=1.0, max_delay=5.0, jitter=0.0)
    error = UpstreamError("x")
    assert [policy.delay(n, error, 0.0) for n in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]


@given(
    attempt=st.integers(min_value=0, max_value=30),
    rand=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    jitter=st.floats(min_value=0.0, max_value=1.0),
    retry_after=st.none() | st.floats(min_value=0.0, max_value=60.0),
)
def test_delay_stays_within_bounds(
    attempt: int, rand: float, jitter: float, retry_after: float | None
) -> None:
    policy = RetryPolicy(max_retries=100, base_delay=0.5, max_delay=30.0, jitter=jitter)
    error = RateLimited("429", retry_after=retry_after)
    delay = policy.delay(attempt, error, rand)
    if retry_after is not None and retry_after > policy.max_delay:
        assert delay is None
        return
    assert delay is not None
    backoff = min(policy.max_delay, policy.base_delay * 2**attempt)
    assert backoff * (1 - jitter) <= delay + 1e-12
    assert delay <= max(backoff, retry_after or 0.0) + 1e-12
    if retry_after is not None:
        assert delay >= retry_after


def test_jitter_spreads_the_waits() -> None:
    policy = RetryPolicy(base_delay=1.0, jitter=0.5)
    error = Timeout("t")
    assert policy.delay(0, error, 0.0) == 1.0
    assert policy.delay(0, error, 0.5) == 0.75
    assert policy.delay(0, error, 0.999) == pytest.approx(0.5005)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"base_delay": -0.1}, "base_delay"),
        ({"jitter": 1.5}, "jitter"),
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_is_retryable() -> None:
    assert is_retryable(RateLimited("x"))
    assert is_retryable(Timeout("x"))
    assert is_retryable(UpstreamError("x", status=503))
    assert not is_retryable(AuthError("x"))
    assert not is_retryable(ContextWindowExceeded("x"))
    assert not is_retryable(ProviderError("x", status=400))
    assert not is_retryable(ValueError("x"))


# -- streams ------------------------------------------------------------------------------


class ScriptedStreams:
    """Opens streams that each yield some items and then maybe fail."""

    def __init__(self, plans: list[tuple[list[str], Exception | None]]) -> None:
        self.plans = list(plans)
        self.opened = 0
        self.closed = 0

    def open(self) -> AsyncIterator[str]:
        items, error = self.plans.pop(0)
        self.opened += 1
        return self._run(items, error)

    async def _run(self, items: list[str], error: Exception | None) -> AsyncIterator[str]:
        try:
            for item in items:
                yield item
            if error is not None:
                raise error
        finally:
            self.closed += 1


async def test_stream_retries_before_the_first_item() -> None:
    sleep = FakeSleep()
    streams = ScriptedStreams(
        [([], RateLimited("429", retry_after=1.5)), ([], UpstreamError("500")), (["a", "b"], None)]
    )
    items = await collect(
        stream_with_retries(streams.open, RetryPolicy(base_delay=0.5, jitter=0.0), sleep=sleep)
    )
    assert items == ["a", "b"]
    assert streams.opened == 3
    assert streams.closed == 3
    assert sleep.delays == [1.5, 1.0]


async def test_stream_failure_after_the_first_item_is_not_retried() -> None:
    sleep = FakeSleep()
    cause = Timeout("read timed out")
    streams = ScriptedStreams([(["a", "b"], cause), (["never"], None)])
    received: list[str] = []
    with pytest.raises(UpstreamError, match="read timed out") as raised:
        async for item in stream_with_retries(streams.open, RetryPolicy(), sleep=sleep):
            received.append(item)
    assert received == ["a", "b"]
    assert raised.value.__cause__ is cause
    assert streams.opened == 1
    assert sleep.delays == []


async def test_stream_upstream_error_after_first_item_is_raised_as_is() -> None:
    error = UpstreamError("stream ended early after 1 chunks")
    streams = ScriptedStreams([(["a"], error)])
    with pytest.raises(UpstreamError) as raised:
        await collect(stream_with_retries(streams.open, RetryPolicy(), sleep=FakeSleep()))
    assert raised.value is error


async def test_stream_non_retryable_error_before_first_item() -> None:
    streams = ScriptedStreams([([], AuthError("bad key")), (["x"], None)])
    with pytest.raises(AuthError):
        await collect(stream_with_retries(streams.open, RetryPolicy(), sleep=FakeSleep()))
    assert streams.opened == 1


async def test_stream_closed_early_by_the_consumer_closes_the_inner_stream() -> None:
    streams = ScriptedStreams([(["a", "b", "c"], None)])
    outer = stream_with_retries(streams.open, RetryPolicy(), sleep=FakeSleep())
    assert await anext(outer) == "a"
    await outer.aclose()
    assert streams.closed == 1
