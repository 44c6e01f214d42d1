"""Rate limits and budgets per tenant and per key: reserve before the call, settle after.

A request names its scopes (its key and its tenant) and must fit every limit of every
scope. `Limiter.acquire` checks all of them and reserves the request's estimated
maximum in one atomic step, so concurrent requests can never overshoot a budget
together; `settle` then replaces the estimate by what the call actually used, and
`release` gives everything back when the call failed before costing anything.

Windows:

- requests/min and tokens/min count in fixed 60-second windows aligned to the UTC
  minute. That is one counter per scope and minute, at the price of allowing up to twice
  the rate across a window boundary; a refusal's ``retry_after`` is the time left in the
  window.
- USD/day and USD/month are calendar days and months in UTC (counter keys carry the
  date, ``2026-11-29`` and ``2026-11``). A settle lands in the window of its acquire.

USD amounts are counted in integer micro-dollars, rounded up, so sums stay exact. With
`MemoryLimiter` the counters live in one process; with `RedisLimiter` gateway replicas
share them and every check-and-reserve is one Lua script, atomic on the server. Window
keys come from each replica's clock: keep replicas on NTP.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING, Any

from lockgate.errors import LimitExceeded, MissingExtra, StoreError
from lockgate.governance._tenants import ApiKey, Limits, Tenant

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = [
    "LimitScope",
    "Limiter",
    "MemoryLimiter",
    "RedisLimiter",
    "Reservation",
]

Clock = Callable[[], float]

# The order of every 4-tuple below: (requests, tokens, USD today, USD this month).
_DIMENSIONS = ("requests_per_minute", "tokens_per_minute", "usd_per_day", "usd_per_month")
_MICROS = Decimal(1_000_000)
_MINUTE_TTL_S = 120
_DAY_TTL_S = 3 * 86_400
_MONTH_TTL_S = 63 * 86_400


@dataclass(frozen=True)
class LimitScope:
    """Something limits apply to, by name: ``tenant:acme`` or ``key:3f9a0c2b7d1e``."""

    name: str
    limits: Limits

    @classmethod
    def of_tenant(cls, tenant: Tenant) -> LimitScope:
        return cls(f"tenant:{tenant.name}", tenant.limits)

    @classmethod
    def of_key(cls, key: ApiKey) -> LimitScope:
        return cls(f"key:{key.id}", key.limits)

    def describe(self) -> str:
        kind, _, ident = self.name.partition(":")
        return f"{kind} '{ident}'" if ident else f"'{self.name}'"

    def _ceilings(self) -> tuple[int | None, int | None, int | None, int | None]:
        limits = self.limits
        return (
            limits.requests_per_minute,
            limits.tokens_per_minute,
            None if limits.usd_per_day is None else _to_micros(limits.usd_per_day),
            None if limits.usd_per_month is None else _to_micros(limits.usd_per_month),
        )


@dataclass(frozen=True)
class _Windows:
    """The windows a request counts in, fixed at acquire time."""

    now: float
    minute: int
    day: str
    month: str

    @classmethod
    def at(cls, now: float) -> _Windows:
        moment = datetime.fromtimestamp(now, UTC)
        return cls(now, int(now // 60), moment.strftime("%Y-%m-%d"), moment.strftime("%Y-%m"))

    def names(self) -> tuple[str, str, str, str]:
        return (
            f"rpm:{self.minute}",
            f"tpm:{self.minute}",
            f"day:{self.day}",
            f"month:{self.month}",
        )


@dataclass(eq=False)
class Reservation:
    """What one `acquire` reserved, and where; pass it to `settle` or `release` once."""

    scopes: tuple[str, ...]
    tokens: int
    usd_micros: int
    _windows: _Windows = field(repr=False)
    _open: bool = field(default=True, repr=False)

    @property
    def usd(self) -> Decimal:
        return Decimal(self.usd_micros) / _MICROS

    def _close(self) -> None:
        if not self._open:
            raise ValueError("this reservation was already settled or released")
        self._open = False


@dataclass(frozen=True)
class _Refusal:
    scope: LimitScope
    dimension: int
    used: int


class Limiter(ABC):
    """Check-and-reserve across scopes; the same contract in one process or many."""

    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock

    async def acquire(
        self, scopes: Sequence[LimitScope], *, tokens: int, usd: Decimal | None
    ) -> Reservation:
        """Reserve one request, `tokens` tokens and `usd` dollars in every scope, or refuse.

        Args:
            scopes: the key's and the tenant's scopes; the request must fit all of them.
            tokens: estimated input tokens plus the maximum output tokens.
            usd: estimated maximum cost; None when the price is unknown, in which case
                nothing is reserved against USD budgets (an exhausted budget still refuses)
                and `settle` records what is known.

        Raises:
            LimitExceeded: a limit refuses; ``limit`` names it, ``retry_after`` says when
                it may pass (None when this request can never fit).
        """
        if tokens < 0 or (usd is not None and usd < 0):
            raise ValueError("tokens and usd must not be negative")
        names = tuple(scope.name for scope in scopes)
        if len(set(names)) != len(names):
            raise ValueError(f"a scope appears twice in {names}")
        windows = _Windows.at(self._clock())
        micros = 0 if usd is None else _to_micros(usd)
        amounts = (1, tokens, micros, micros)
        refusal = await self._reserve(scopes, windows, amounts)
        if refusal is not None:
            raise _refused(refusal, windows, amounts[refusal.dimension])
        return Reservation(names, tokens, micros, windows)

    async def settle(self, reservation: Reservation, *, tokens: int, usd: Decimal | None) -> None:
        """Replace the reserved estimate by the actual use (``usd=None``: keep the estimate)."""
        reservation._close()
        micros = reservation.usd_micros if usd is None else _to_micros(usd)
        delta_usd = micros - reservation.usd_micros
        await self._adjust(reservation, (0, tokens - reservation.tokens, delta_usd, delta_usd))

    async def release(self, reservation: Reservation) -> None:
        """Give back everything `acquire` took: the call failed before costing anything."""
        reservation._close()
        micros = -reservation.usd_micros
        await self._adjust(reservation, (-1, -reservation.tokens, micros, micros))

    async def spent(self, scope_name: str) -> dict[str, Any]:
        """USD spent today and this month by a scope (plus this minute's requests/tokens)."""
        windows = _Windows.at(self._clock())
        used = await self._read(scope_name, windows)
        return {
            "day": windows.day,
            "month": windows.month,
            "usd_today": Decimal(used[2]) / _MICROS,
            "usd_this_month": Decimal(used[3]) / _MICROS,
            "requests_this_minute": used[0],
            "tokens_this_minute": used[1],
        }

    async def seed(self, spent: dict[str, tuple[Decimal, Decimal]]) -> None:
        """At start-up, raise counters to USD already spent (scope → today, this month).

        Counters only go up: seeding twice, or from several replicas, is harmless.
        """
        windows = _Windows.at(self._clock())
        values = {
            name: (_to_micros(day), _to_micros(month)) for name, (day, month) in spent.items()
        }
        await self._seed(values, windows)

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""

    @abstractmethod
    async def _reserve(
        self, scopes: Sequence[LimitScope], windows: _Windows, amounts: tuple[int, int, int, int]
    ) -> _Refusal | None: ...

    @abstractmethod
    async def _adjust(
        self, reservation: Reservation, deltas: tuple[int, int, int, int]
    ) -> None: ...

    @abstractmethod
    async def _read(self, scope_name: str, windows: _Windows) -> tuple[int, int, int, int]: ...

    @abstractmethod
    async def _seed(self, values: dict[str, tuple[int, int]], windows: _Windows) -> None: ...


def _fits(used: int, amount: int, ceiling: int) -> bool:
    # A request that reserves nothing (unknown price) still needs budget left.
    return used + amount <= ceiling and (amount > 0 or used < ceiling)


class MemoryLimiter(Limiter):
    """Counters in this process; check-and-reserve under one `asyncio.Lock`."""

    def __init__(self, *, clock: Clock = time.time) -> None:
        super().__init__(clock=clock)
        self._lock = asyncio.Lock()
        self._counters: dict[str, dict[str, int]] = {}  # window name → scope → amount
        self._pruned_minute: int | None = None

    async def close(self) -> None:
        """Nothing to release."""

    async def _reserve(
        self, scopes: Sequence[LimitScope], windows: _Windows, amounts: tuple[int, int, int, int]
    ) -> _Refusal | None:
        async with self._lock:
            self._prune(windows)
            buckets = [self._counters.setdefault(name, {}) for name in windows.names()]
            for scope in scopes:
                for dimension, ceiling in enumerate(scope._ceilings()):
                    used = buckets[dimension].get(scope.name, 0)
                    if ceiling is not None and not _fits(used, amounts[dimension], ceiling):
                        return _Refusal(scope, dimension, used)
            for scope in scopes:
                for bucket, amount in zip(buckets, amounts, strict=True):
                    bucket[scope.name] = bucket.get(scope.name, 0) + amount
        return None

    async def _adjust(self, reservation: Reservation, deltas: tuple[int, int, int, int]) -> None:
        async with self._lock:
            for name, delta in zip(reservation._windows.names(), deltas, strict=True):
                bucket = self._counters.get(name)
                if delta == 0 or bucket is None:
                    continue  # nothing to change, or the window has passed
                for scope in reservation.scopes:
                    if scope in bucket:
                        bucket[scope] = max(0, bucket[scope] + delta)

    async def _read(self, scope_name: str, windows: _Windows) -> tuple[int, int, int, int]:
        async with self._lock:
            rpm, tpm, day, month = (
                self._counters.get(name, {}).get(scope_name, 0) for name in windows.names()
            )
        return rpm, tpm, day, month

    async def _seed(self, values: dict[str, tuple[int, int]], windows: _Windows) -> None:
        async with self._lock:
            day = self._counters.setdefault(windows.names()[2], {})
            month = self._counters.setdefault(windows.names()[3], {})
            for scope, (today, this_month) in values.items():
                day[scope] = max(day.get(scope, 0), today)
                month[scope] = max(month.get(scope, 0), this_month)

    def _prune(self, windows: _Windows) -> None:
        if self._pruned_minute == windows.minute:
            return
        self._pruned_minute = windows.minute
        # Keep yesterday (and its month) so settles straddling midnight still land.
        earlier = datetime.fromtimestamp(windows.now, UTC) - timedelta(days=1)
        keep = {*windows.names(), f"day:{earlier:%Y-%m-%d}", f"month:{earlier:%Y-%m}"}
        for name in [name for name in self._counters if name not in keep]:
            del self._counters[name]


# KEYS: four per scope (requests, tokens, USD day, USD month); ARGV: the four amounts,
# the four TTLs, then four ceilings per scope (-1: unlimited). Returns {0} when reserved,
# else {scope number, dimension number, amount used}.
_RESERVE = """
local n = #KEYS / 4
for s = 0, n - 1 do
  for d = 1, 4 do
    local ceiling = tonumber(ARGV[8 + s * 4 + d])
    if ceiling >= 0 then
      local used = tonumber(redis.call('GET', KEYS[s * 4 + d]) or '0')
      local amount = tonumber(ARGV[d])
      if used + amount > ceiling or (amount == 0 and used >= ceiling) then
        return {s + 1, d, used}
      end
    end
  end
end
for i = 1, #KEYS do
  local d = ((i - 1) % 4) + 1
  redis.call('INCRBY', KEYS[i], ARGV[d])
  redis.call('EXPIRE', KEYS[i], ARGV[4 + d])
end
return {0}
"""

# KEYS: four per scope; ARGV: the four deltas. A window that expired is left alone.
_ADJUST = """
for i = 1, #KEYS do
  local delta = tonumber(ARGV[((i - 1) % 4) + 1])
  if delta ~= 0 and redis.call('EXISTS', KEYS[i]) == 1 then
    if redis.call('INCRBY', KEYS[i], delta) < 0 then
      redis.call('SET', KEYS[i], 0, 'KEEPTTL')
    end
  end
end
return 0
"""

# KEYS: counters; ARGV: a value and a TTL per key. Raises a counter, never lowers it.
_SEED = """
for i = 1, #KEYS do
  local value = tonumber(ARGV[i * 2 - 1])
  if tonumber(redis.call('GET', KEYS[i]) or '0') < value then
    redis.call('SET', KEYS[i], value, 'EX', ARGV[i * 2])
  end
end
return 0
"""


class RedisLimiter(Limiter):
    """Counters in Redis, shared by gateway replicas; each reserve is one Lua script.

    Example:
        >>> limiter = RedisLimiter("redis://127.0.0.1:6379/0")
        >>> reservation = await limiter.acquire(scopes, tokens=1200, usd=Decimal("0.01"))
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "lockgate:limits:",
        max_connections: int = 64,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(clock=clock)
        try:
            import redis.asyncio as aioredis
            from redis.exceptions import RedisError
        except ModuleNotFoundError as exc:
            raise MissingExtra("Shared rate limits", "redis", exc.name or "redis") from None
        self._errors: type[Exception] = RedisError
        self._url = url
        self._prefix = prefix
        # A bounded pool that makes callers wait for a connection rather than fail.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=10
        )
        self._redis: aioredis.Redis = aioredis.Redis.from_pool(pool)
        self._reserve_script = self._redis.register_script(_RESERVE)
        self._adjust_script = self._redis.register_script(_ADJUST)
        self._seed_script = self._redis.register_script(_SEED)

    async def close(self) -> None:
        await self._redis.aclose()

    def _keys(self, scope_name: str, windows: _Windows) -> list[str]:
        return [f"{self._prefix}{scope_name}:{name}" for name in windows.names()]

    async def _reserve(
        self, scopes: Sequence[LimitScope], windows: _Windows, amounts: tuple[int, int, int, int]
    ) -> _Refusal | None:
        keys = [key for scope in scopes for key in self._keys(scope.name, windows)]
        args: list[int] = [*amounts, _MINUTE_TTL_S, _MINUTE_TTL_S, _DAY_TTL_S, _MONTH_TTL_S]
        for scope in scopes:
            args.extend(-1 if ceiling is None else ceiling for ceiling in scope._ceilings())
        result = await self._call(self._reserve_script, keys, args)
        if result[0] == 0:
            return None
        return _Refusal(scopes[int(result[0]) - 1], int(result[1]) - 1, int(result[2]))

    async def _adjust(self, reservation: Reservation, deltas: tuple[int, int, int, int]) -> None:
        keys = [
            key for name in reservation.scopes for key in self._keys(name, reservation._windows)
        ]
        await self._call(self._adjust_script, keys, list(deltas))

    async def _read(self, scope_name: str, windows: _Windows) -> tuple[int, int, int, int]:
        try:
            values = await self._redis.mget(self._keys(scope_name, windows))
        except self._errors as exc:
            raise self._failure(exc) from exc
        rpm, tpm, day, month = (int(value or 0) for value in values)
        return rpm, tpm, day, month

    async def _seed(self, values: dict[str, tuple[int, int]], windows: _Windows) -> None:
        keys: list[str] = []
        args: list[int] = []
        for scope, (today, this_month) in values.items():
            _, _, day_key, month_key = self._keys(scope, windows)
            keys += [day_key, month_key]
            args += [today, _DAY_TTL_S, this_month, _MONTH_TTL_S]
        if keys:
            await self._call(self._seed_script, keys, args)

    async def _call(self, script: Any, keys: list[str], args: list[int]) -> list[Any]:
        try:
            result = await script(keys=keys, args=args)
        except self._errors as exc:
            raise self._failure(exc) from exc
        return result if isinstance(result, list) else [result]

    def _failure(self, exc: Exception) -> StoreError:
        return StoreError(f"Redis at {self._url} failed while checking limits: {exc}")


# -- refusals ----------------------------------------------------------------------------


def _refused(refusal: _Refusal, windows: _Windows, amount: int) -> LimitExceeded:
    scope, dimension, used = refusal.scope, refusal.dimension, refusal.used
    ceiling = scope._ceilings()[dimension]
    assert ceiling is not None
    who = scope.describe()
    limit = f"{scope.name} {_DIMENSIONS[dimension]}"
    minute_left = 60 - (windows.now % 60)
    if dimension == 0:
        if ceiling == 0:
            return LimitExceeded(
                f"{who} may not make requests (its limit is 0 per minute)", limit=limit
            )
        return LimitExceeded(
            f"{who} has made {used:,} of its {ceiling:,} requests allowed per minute; "
            f"the window resets in {_duration(minute_left)}",
            limit=limit,
            retry_after=minute_left,
        )
    if dimension == 1:
        if amount > ceiling:
            return LimitExceeded(
                f"this request needs up to {amount:,} tokens, more than {who}'s limit of "
                f"{ceiling:,} tokens per minute; lower max_tokens or shorten the input",
                limit=limit,
            )
        return LimitExceeded(
            f"{who} has used {used:,} of its {ceiling:,} tokens per minute and this request "
            f"needs up to {amount:,}; the window resets in {_duration(minute_left)}",
            limit=limit,
            retry_after=minute_left,
        )
    moment = datetime.fromtimestamp(windows.now, UTC)
    if dimension == 2:
        period = "daily"
        reset = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        when = "at 00:00 UTC"
    else:
        period = "monthly"
        reset = (moment.replace(day=28) + timedelta(days=4)).replace(
            day=1, hour=0, minute=0, second=0, microsecond=0
        )
        when = f"on {reset:%Y-%m-%d} 00:00 UTC"
    if amount > ceiling:
        return LimitExceeded(
            f"this request may cost up to {_usd(amount)}, more than {who}'s whole {period} "
            f"budget of {_usd(ceiling)}; lower max_tokens or raise the budget",
            limit=limit,
        )
    wait = (reset - moment).total_seconds()
    needs = f" and this request may cost up to {_usd(amount)}" if amount else ""
    return LimitExceeded(
        f"{who} has used {_usd(used)} of its {_usd(ceiling)} {period} budget{needs}; "
        f"resets {when} (in {_duration(wait)})",
        limit=limit,
        retry_after=wait,
    )


def _to_micros(usd: Decimal) -> int:
    return int((usd * _MICROS).to_integral_value(rounding=ROUND_CEILING))


def _usd(micros: int) -> str:
    """``$0.50``, ``$0.4998``, ``$0.000123``: at least cents, no trailing zeros beyond."""
    text = f"{Decimal(micros) / _MICROS:.6f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction.ljust(2, '0')}"


def _duration(seconds: float) -> str:
    """``45s``, ``12m5s``, ``3h12m``, ``2d3h``."""
    total = max(1, int(-(-seconds // 1)))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    return f"{secs}s"
