"""Rate limits and budgets, in memory and on the real Redis at 127.0.0.1:6379."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from lockgate.errors import LimitExceeded, StoreError
from lockgate.gateway._limits import Limiter, LimitScope, MemoryLimiter, RedisLimiter
from lockgate.governance._tenants import Limits

REDIS_URL = "redis://127.0.0.1:6379/0"
CENT = Decimal("0.01")


class Clock:
    """A hand-moved clock: 2026-11-29 20:48:30 UTC, 30 s into a minute window."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, 20, 48, 30, tzinfo=UTC).timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards (never FLUSHDB)."""
    value = f"lockgate-test:{uuid.uuid4().hex}:"
    yield value
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{value}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


MakeLimiter = Callable[[], Limiter]


@pytest.fixture(params=["memory", "redis"])
async def make_limiter(
    request: pytest.FixtureRequest, clock: Clock, prefix: str
) -> AsyncIterator[MakeLimiter]:
    """Builds limiters sharing one store: one process (memory) or one Redis prefix."""
    made: list[Limiter] = []
    shared = MemoryLimiter(clock=clock)

    def make() -> Limiter:
        if request.param == "memory":
            return shared
        limiter = RedisLimiter(REDIS_URL, prefix=prefix, clock=clock)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.close()


@pytest.fixture
def limiter(make_limiter: MakeLimiter) -> Limiter:
    return make_limiter()


def tenant(**limits: object) -> LimitScope:
    return LimitScope("tenant:acme", Limits(**limits))  # type: ignore[arg-type]


async def test_requests_per_minute_refuses_with_retry_after(limiter: Limiter, clock: Clock) -> None:
    scopes = [tenant(requests_per_minute=3)]
    for _ in range(3):
        await limiter.acquire(scopes, tokens=10, usd=None)
    with pytest.raises(LimitExceeded) as refused:
        await limiter.acquire(scopes, tokens=10, usd=None)
    assert refused.value.limit == "tenant:acme requests_per_minute"
    assert refused.value.retry_after == pytest.approx(30)
    assert str(refused.value) == (
        "tenant 'acme' has made 3 of its 3 requests allowed per minute; the window resets in 30s"
    )
    clock.now += 30  # the next minute window
    await limiter.acquire(scopes, tokens=10, usd=None)
    assert (await limiter.spent("tenant:acme"))["requests_this_minute"] == 1


async def test_tokens_per_minute_counts_reserved_then_actual_tokens(limiter: Limiter) -> None:
    scopes = [tenant(tokens_per_minute=1000)]
    first = await limiter.acquire(scopes, tokens=600, usd=None)
    with pytest.raises(LimitExceeded) as refused:
        await limiter.acquire(scopes, tokens=500, usd=None)
    assert refused.value.limit == "tenant:acme tokens_per_minute"
    assert refused.value.retry_after == pytest.approx(30)
    assert "has used 600 of its 1,000 tokens per minute" in str(refused.value)
    await limiter.settle(first, tokens=300, usd=None)  # the answer was shorter
    await limiter.acquire(scopes, tokens=500, usd=None)
    with pytest.raises(LimitExceeded) as never:
        await limiter.acquire(scopes, tokens=5000, usd=None)
    assert never.value.retry_after is None
    assert "needs up to 5,000 tokens, more than tenant 'acme''s limit" in str(never.value)


async def race(limiters: list[Limiter], scopes: list[LimitScope], n: int) -> list[object]:
    async def one(i: int) -> object:
        limiter = limiters[i % len(limiters)]
        try:
            reservation = await limiter.acquire(scopes, tokens=100, usd=CENT)
        except LimitExceeded as exc:
            return exc
        await asyncio.sleep(0)  # the upstream call
        await limiter.settle(reservation, tokens=90, usd=CENT)
        return reservation

    return await asyncio.gather(*(one(i) for i in range(n)))


async def test_budget_race_admits_exactly_what_the_budget_allows(limiter: Limiter) -> None:
    scopes = [tenant(usd_per_day=Decimal("0.50"))]
    outcomes = await race([limiter], scopes, 200)
    refused = [o for o in outcomes if isinstance(o, LimitExceeded)]
    assert len(outcomes) - len(refused) == 50
    assert len(refused) == 150
    assert {e.limit for e in refused} == {"tenant:acme usd_per_day"}
    assert str(refused[0]) == (
        "tenant 'acme' has used $0.50 of its $0.50 daily budget and this request may cost "
        "up to $0.01; resets at 00:00 UTC (in 3h11m)"
    )
    assert refused[0].retry_after == pytest.approx(3 * 3600 + 11 * 60 + 30)
    spent = await limiter.spent("tenant:acme")
    assert spent["usd_today"] == Decimal("0.50")
    assert spent["usd_this_month"] == Decimal("0.50")
    assert (spent["day"], spent["month"]) == ("2026-11-29", "2026-11")


async def test_two_redis_replicas_share_one_budget(clock: Clock, prefix: str) -> None:
    replicas: list[Limiter] = [RedisLimiter(REDIS_URL, prefix=prefix, clock=clock) for _ in "ab"]
    try:
        outcomes = await race(replicas, [tenant(usd_per_day=Decimal("0.50"))], 200)
        admitted = [o for o in outcomes if not isinstance(o, LimitExceeded)]
        assert len(admitted) == 50
        for replica in replicas:
            assert (await replica.spent("tenant:acme"))["usd_today"] == Decimal("0.50")
    finally:
        for replica in replicas:
            await replica.close()


async def test_settling_below_the_estimate_frees_budget(limiter: Limiter) -> None:
    scopes = [tenant(usd_per_day=Decimal("0.05"))]
    held = [await limiter.acquire(scopes, tokens=10, usd=CENT) for _ in range(5)]
    with pytest.raises(LimitExceeded):
        await limiter.acquire(scopes, tokens=10, usd=CENT)
    await limiter.settle(held[0], tokens=10, usd=Decimal("0.002"))
    await limiter.acquire(scopes, tokens=10, usd=Decimal("0.008"))
    with pytest.raises(LimitExceeded):
        await limiter.acquire(scopes, tokens=10, usd=Decimal("0.000001"))
    assert (await limiter.spent("tenant:acme"))["usd_today"] == Decimal("0.05")


async def test_release_gives_everything_back(limiter: Limiter) -> None:
    scopes = [tenant(requests_per_minute=1, usd_per_day=CENT)]
    reservation = await limiter.acquire(scopes, tokens=10, usd=CENT)
    await limiter.release(reservation)
    assert await limiter.spent("tenant:acme") == {
        "day": "2026-11-29",
        "month": "2026-11",
        "usd_today": Decimal(0),
        "usd_this_month": Decimal(0),
        "requests_this_minute": 0,
        "tokens_this_minute": 0,
    }
    again = await limiter.acquire(scopes, tokens=10, usd=CENT)
    with pytest.raises(ValueError, match="already settled or released"):
        await limiter.release(reservation)
    await limiter.settle(again, tokens=10, usd=CENT)


async def test_key_limits_narrow_the_tenants(limiter: Limiter) -> None:
    acme = tenant(requests_per_minute=100, usd_per_month=Decimal("0.03"))
    narrow = LimitScope("key:k1", Limits(requests_per_minute=2))
    other = LimitScope("key:k2", Limits())
    for _ in range(2):
        await limiter.acquire([narrow, acme], tokens=1, usd=CENT)
    with pytest.raises(LimitExceeded) as by_key:
        await limiter.acquire([narrow, acme], tokens=1, usd=CENT)
    assert by_key.value.limit == "key:k1 requests_per_minute"
    assert str(by_key.value).startswith("key 'k1' has made 2 of its 2 requests")
    # The refused request reserved nothing anywhere: the tenant has room for one more.
    await limiter.acquire([other, acme], tokens=1, usd=CENT)
    with pytest.raises(LimitExceeded) as by_tenant:
        await limiter.acquire([other, acme], tokens=1, usd=CENT)
    assert by_tenant.value.limit == "tenant:acme usd_per_month"
    assert "its $0.03 monthly budget" in str(by_tenant.value)
    assert "resets on 2026-12-01 00:00 UTC (in 1d3h)" in str(by_tenant.value)
    assert (await limiter.spent("key:k2"))["usd_this_month"] == CENT


async def test_unknown_price_reserves_nothing_but_respects_an_exhausted_budget(
    limiter: Limiter,
) -> None:
    scopes = [tenant(usd_per_day=Decimal("0.02"))]
    first = await limiter.acquire(scopes, tokens=10, usd=None)
    second = await limiter.acquire(scopes, tokens=10, usd=None)
    await limiter.settle(first, tokens=10, usd=Decimal("0.015"))
    await limiter.settle(second, tokens=10, usd=Decimal("0.0051"))
    with pytest.raises(LimitExceeded) as refused:
        await limiter.acquire(scopes, tokens=10, usd=None)
    assert "has used $0.0201 of its $0.02 daily budget; resets" in str(refused.value)


async def test_a_request_dearer_than_the_whole_budget_is_refused_for_good(
    limiter: Limiter,
) -> None:
    with pytest.raises(LimitExceeded) as refused:
        await limiter.acquire([tenant(usd_per_day=CENT)], tokens=1, usd=Decimal("0.05"))
    assert refused.value.retry_after is None
    assert "may cost up to $0.05, more than tenant 'acme''s whole daily budget" in str(
        refused.value
    )


async def test_seed_raises_counters_to_what_was_already_spent(limiter: Limiter) -> None:
    await limiter.seed({"tenant:acme": (Decimal("0.45"), Decimal("3"))})
    await limiter.seed({"tenant:acme": (Decimal("0.10"), Decimal("1"))})  # never lowers
    outcomes = await race([limiter], [tenant(usd_per_day=Decimal("0.50"))], 20)
    assert sum(not isinstance(o, LimitExceeded) for o in outcomes) == 5
    spent = await limiter.spent("tenant:acme")
    assert (spent["usd_today"], spent["usd_this_month"]) == (Decimal("0.50"), Decimal("3.05"))


async def test_redis_down_is_a_runtime_failure(clock: Clock) -> None:
    limiter = RedisLimiter("redis://127.0.0.1:1/0", clock=clock)
    try:
        with pytest.raises(StoreError, match=re.escape("Redis at redis://127.0.0.1:1/0 failed")):
            await limiter.acquire([tenant(requests_per_minute=1)], tokens=1, usd=None)
    finally:
        await limiter.close()
