"""The gateway's response caches: exact (hash of the normalised request) and semantic.

Both are per tenant: one tenant never receives an answer produced for another. Both hold
`ChatResponse` objects; replaying a hit as a stream is the gateway's job.

**Exact.** The key is sha256 over the canonical JSON of the request body *as the client
sent it* (``model`` as requested, so ``auto`` and ``openai/gpt-4o`` are distinct entries),
minus the fields that do not change the answer: ``stream``, ``stream_options`` and
``user``. Unset (``null``) top-level fields are dropped and integral floats are written
as integers, so ``"temperature": 0`` and ``"temperature": 0.0`` share an entry.

The semantic cache lives in `lockgate.gateway._semantic` (it needs numpy, which a gateway
without semantic routes never loads).

**Tiers.** With ``redis_url`` set, `TieredExactCache` keeps a process-local LRU in front of
`RedisExactCache`, so replicas share answers and a repeated request on one replica costs
no round trip.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

import orjson

from lockgate.providers._types import ChatResponse, Usage

__all__ = [
    "ExactCache",
    "RedisExactCache",
    "TieredExactCache",
    "digest",
    "normalise",
    "normalised_request",
]

Clock = Callable[[], float]
log = logging.getLogger("lockgate.gateway")

_REDIS_TIMEOUT_S = 0.5
_LOG_EVERY_S = 30.0

# Request fields that change how an answer is delivered or attributed, not what it says.
_NOT_KEYED = frozenset({"stream", "stream_options", "user"})


def normalise(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalise(v) for v in value]
    return value


def normalised_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """`body` without the fields that do not change the answer, in normal form."""
    return {
        key: normalise(value)
        for key, value in body.items()
        if key not in _NOT_KEYED and value is not None
    }


def digest(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


class ExactCache:
    """An in-memory LRU of responses with a time-to-live, keyed per tenant.

    Example:
        >>> cache = ExactCache(ttl_s=3600)
        >>> cache.put("acme", body, response)
        >>> cache.get("acme", {**body, "stream": True}) is response
        True

    Args:
        ttl_s: seconds an entry is served after it was stored.
        max_entries: entries kept across all tenants; the least recently used go first.
        clock: monotonic seconds (tests inject one).
    """

    def __init__(
        self, *, ttl_s: float, max_entries: int = 100_000, clock: Clock = time.monotonic
    ) -> None:
        if ttl_s <= 0 or max_entries < 1:
            raise ValueError("ttl_s must be > 0 and max_entries >= 1")
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], tuple[float, ChatResponse]] = OrderedDict()

    @staticmethod
    def key(request_body: Mapping[str, Any]) -> str:
        """sha256 (hex) of the normalised request."""
        return digest(normalised_request(request_body))

    def get(self, tenant: str, request_body: Mapping[str, Any]) -> ChatResponse | None:
        """The stored response for this tenant and request, if fresh."""
        slot = (tenant, self.key(request_body))
        entry = self._entries.get(slot)
        if entry is None:
            return None
        expires, response = entry
        if self._clock() >= expires:
            del self._entries[slot]
            return None
        self._entries.move_to_end(slot)
        return response

    def put(
        self,
        tenant: str,
        request_body: Mapping[str, Any],
        response: ChatResponse,
        *,
        ttl_s: float | None = None,
    ) -> None:
        """Store `response` for `ttl_s` (default: the cache's), evicting the least recently
        used entries beyond the limit."""
        slot = (tenant, self.key(request_body))
        self._entries[slot] = (self._clock() + (self.ttl_s if ttl_s is None else ttl_s), response)
        self._entries.move_to_end(slot)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class RedisExactCache:
    """The exact cache in Redis, shared by gateway replicas; same keys as `ExactCache`.

    Unlike `ExactCache` its `get` and `put` are coroutines: a network round trip must not
    block the event loop. Entries expire through Redis's own TTL; bound memory with the
    server's ``maxmemory`` and ``maxmemory-policy allkeys-lru`` (Redis then evicts the
    least recently used, which is what `ExactCache.max_entries` does in memory).

    Example:
        >>> cache = RedisExactCache("redis://127.0.0.1:6379/0", ttl_s=3600)
        >>> await cache.put("acme", body, response)
        >>> await cache.get("acme", body)

    Args:
        url: a ``redis://`` URL (``Settings.redis_url``).
        ttl_s: seconds an entry is served after it was stored.
        prefix: namespace of the keys (tests use a unique one).
    """

    def __init__(self, url: str, ttl_s: float, *, prefix: str = "lockgate:cache:exact:") -> None:
        import redis.asyncio  # only replicas sharing a Redis pay for the import
        import redis.exceptions

        if ttl_s <= 0:
            raise ValueError("ttl_s must be > 0")
        self.ttl_s = ttl_s
        self.prefix = prefix
        # What a call can raise when Redis is down, slow, or holds an entry this version
        # cannot decode (the tiered cache treats these as a miss).
        self.errors: tuple[type[Exception], ...] = (
            redis.exceptions.RedisError,
            OSError,
            TimeoutError,
            ValueError,
            TypeError,
            KeyError,
        )
        # A cache must answer fast or not at all: a slow Redis counts as a miss.
        self._redis: redis.asyncio.Redis = redis.asyncio.Redis.from_url(
            url, socket_timeout=_REDIS_TIMEOUT_S, socket_connect_timeout=_REDIS_TIMEOUT_S
        )

    def redis_key(self, tenant: str, request_body: Mapping[str, Any]) -> str:
        # Hashing the tenant too keeps any tenant name (colons included) out of the syntax.
        return self.prefix + digest([tenant, ExactCache.key(request_body)])

    async def get(self, tenant: str, request_body: Mapping[str, Any]) -> ChatResponse | None:
        found = await self.get_with_ttl(tenant, request_body)
        return found[0] if found is not None else None

    async def get_with_ttl(
        self, tenant: str, request_body: Mapping[str, Any]
    ) -> tuple[ChatResponse, float] | None:
        """The stored response and the seconds it has left, in one round trip."""
        key = self.redis_key(tenant, request_body)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.pttl(key)
            raw, left_ms = await pipe.execute()
        if raw is None or left_ms <= 0:
            return None
        data = orjson.loads(raw)
        data["usage"] = Usage(**data["usage"])
        return ChatResponse(**data), left_ms / 1000

    async def put(
        self, tenant: str, request_body: Mapping[str, Any], response: ChatResponse
    ) -> None:
        await self._redis.set(
            self.redis_key(tenant, request_body),
            orjson.dumps(asdict(response)),
            px=max(1, round(self.ttl_s * 1000)),
        )

    async def aclose(self) -> None:
        await self._redis.aclose()


class TieredExactCache:
    """The gateway's exact cache: a local `ExactCache`, backed by Redis when configured.

    A lookup tries the local LRU, then Redis (a hit there is copied locally for the time it
    has left, so no entry outlives its TTL); a store writes both. Without Redis it is the
    local cache behind the same coroutine interface.

    Redis trouble never fails a request: an unreachable, slow (over 0.5 s) or confused
    Redis (an entry this version cannot read) counts as a miss, or a store skipped. It is
    logged at most every 30 seconds and counted in `shared_errors`.

    Args:
        local: the process-local LRU.
        shared: the Redis tier, or None.
    """

    def __init__(self, local: ExactCache, shared: RedisExactCache | None = None) -> None:
        self.local = local
        self.shared = shared
        self.shared_errors = 0
        self._logged_at = -math.inf

    async def get(self, tenant: str, request_body: Mapping[str, Any]) -> ChatResponse | None:
        response = self.local.get(tenant, request_body)
        if response is not None or self.shared is None:
            return response
        try:
            found = await self.shared.get_with_ttl(tenant, request_body)
        except self.shared.errors as exc:
            self._shared_failed("read", exc)
            return None
        if found is None:
            return None
        response, left_s = found
        self.local.put(tenant, request_body, response, ttl_s=left_s)
        return response

    async def put(
        self, tenant: str, request_body: Mapping[str, Any], response: ChatResponse
    ) -> None:
        self.local.put(tenant, request_body, response)
        if self.shared is None:
            return
        try:
            await self.shared.put(tenant, request_body, response)
        except self.shared.errors as exc:
            self._shared_failed("write", exc)

    def _shared_failed(self, what: str, exc: Exception) -> None:
        self.shared_errors += 1
        now = time.monotonic()
        if now - self._logged_at >= _LOG_EVERY_S:
            self._logged_at = now
            log.warning(
                "exact cache: Redis %s failed (%s: %s); answering without the shared tier "
                "(%d failures so far)",
                what,
                type(exc).__name__,
                exc,
                self.shared_errors,
            )

    async def aclose(self) -> None:
        if self.shared is not None:
            await self.shared.aclose()
