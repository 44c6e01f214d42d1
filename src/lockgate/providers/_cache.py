"""The model-response cache, and replay: what makes a recorded run reproducible.

Entries are keyed by sha256 over the provider instance, the pinned model, the messages
and every parameter (seed included), so two calls share an entry only when they are the
same call. Only successful responses are stored. Modes:

- ``use``: read, and store misses (the default);
- ``refresh``: skip reads, store every response (re-record);
- ``off``: neither read nor store (``--no-cache``);
- ``replay``: read only, ignoring expiry; a miss raises `ReplayMiss` instead of calling
  the model, so a replayed run either reproduces exactly or fails loudly.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Literal

import sqlalchemy as sa

from lockgate._canonical import canonical_hash
from lockgate.errors import ReplayMiss
from lockgate.providers._types import ChatRequest, ChatResponse, Usage
from lockgate.store import Store
from lockgate.store._tables import response_cache

CacheMode = Literal["use", "refresh", "off", "replay"]
CACHE_MODES: tuple[CacheMode, ...] = ("use", "refresh", "off", "replay")


def cache_key(provider: str, request: ChatRequest) -> str:
    """The entry key of `request` sent to provider instance `provider`."""
    return canonical_hash(
        {
            "provider": provider,
            "model": request.model,
            "messages": request.messages,
            "params": request.params(),
        }
    )


class ResponseCache:
    """Stored chat responses in the lockgate database.

    Example:
        >>> cache = ResponseCache(store, ttl_seconds=86400)
        >>> cache.get("local", request)  # None on a miss
    """

    def __init__(
        self, store: Store, *, ttl_seconds: float | None = None, mode: CacheMode = "use"
    ) -> None:
        if mode not in CACHE_MODES:
            raise ValueError(f"cache mode must be one of {', '.join(CACHE_MODES)}, not {mode!r}")
        self.store = store
        self.ttl = timedelta(seconds=ttl_seconds) if ttl_seconds else None
        self.mode: CacheMode = mode

    @property
    def reads(self) -> bool:
        return self.mode in ("use", "replay")

    @property
    def writes(self) -> bool:
        return self.mode in ("use", "refresh")

    def get(self, provider: str, request: ChatRequest) -> ChatResponse | None:
        """The stored response, or None. In replay mode a miss raises `ReplayMiss`."""
        if not self.reads:
            return None
        key = cache_key(provider, request)
        query = sa.select(response_cache.c.response).where(response_cache.c.key == key)
        if self.mode != "replay":
            query = query.where(
                sa.or_(
                    response_cache.c.expires_at.is_(None),
                    response_cache.c.expires_at > datetime.now(UTC),
                )
            )
        with self.store.read() as conn:
            text = conn.execute(query).scalar_one_or_none()
        if text is None:
            if self.mode == "replay":
                raise ReplayMiss(
                    f"replay: no recorded response for {provider}/{request.model} "
                    f"(cache key {key[:12]}); the call differs from the recorded run, or the "
                    "run was never recorded: run once without --replay to record it"
                )
            return None
        return _decode(text)

    def put(self, provider: str, request: ChatRequest, response: ChatResponse) -> None:
        """Store a successful response (replaces an older entry for the same call)."""
        if not self.writes:
            return
        now = datetime.now(UTC)
        values = {
            "key": cache_key(provider, request),
            "provider": provider,
            "model": request.model,
            "response": json.dumps(asdict(response), sort_keys=True),
            "created_at": now,
            "expires_at": now + self.ttl if self.ttl else None,
        }
        with self.store.write() as conn:
            conn.execute(sa.delete(response_cache).where(response_cache.c.key == values["key"]))
            conn.execute(sa.insert(response_cache).values(**values))

    def purge_expired(self) -> int:
        """Delete expired entries; return how many."""
        with self.store.write() as conn:
            result = conn.execute(
                sa.delete(response_cache).where(response_cache.c.expires_at <= datetime.now(UTC))
            )
            return int(result.rowcount or 0)

    def clear(self) -> int:
        with self.store.write() as conn:
            return int(conn.execute(sa.delete(response_cache)).rowcount or 0)

    def count(self) -> int:
        with self.store.read() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(response_cache)).scalar_one()
            )


def _decode(text: str) -> ChatResponse:
    data = json.loads(text)
    data["usage"] = Usage(**data["usage"])
    return ChatResponse(**data)
