"""The gateway's response caches: exact (hash of the normalised request) and semantic.

Both are per tenant: one tenant never receives an answer produced for another. Both hold
`ChatResponse` objects; replaying a hit as a stream is the gateway's job.

**Exact.** The key is sha256 over the canonical JSON of the request body *as the client
sent it* (``model`` as requested, so ``auto`` and ``openai/gpt-4o`` are distinct entries),
minus the fields that do not change the answer: ``stream``, ``stream_options`` and
``user``. Unset (``null``) top-level fields are dropped and integral floats are written
as integers, so ``"temperature": 0`` and ``"temperature": 0.0`` share an entry.

**Semantic.** Opt-in per route. An entry is the normalised embedding of the last user
message plus a hash of everything else (the other messages, with the last user message's
position, and the answer-changing params). A lookup matches only entries whose context
hash is identical and whose cosine similarity is at least the threshold. The context must
match exactly because the embedding sees only the final question: "and in French?"
after two different conversations, or the same question under two different system
prompts (persona, output format, policy), needs different answers however similar the
final words are.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from lockgate.providers._client import Client
from lockgate.providers._types import ChatResponse, Message, Usage

__all__ = [
    "ExactCache",
    "RedisExactCache",
    "SemanticCache",
    "SemanticKey",
    "normalised_request",
]

Clock = Callable[[], float]
Vector = npt.NDArray[np.float32]

# Request fields that change how an answer is delivered or attributed, not what it says.
_NOT_KEYED = frozenset({"stream", "stream_options", "user"})


def _normalise(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    return value


def normalised_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """`body` without the fields that do not change the answer, in normal form."""
    return {
        key: _normalise(value)
        for key, value in body.items()
        if key not in _NOT_KEYED and value is not None
    }


def _digest(value: Any) -> str:
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
        return _digest(normalised_request(request_body))

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

    def put(self, tenant: str, request_body: Mapping[str, Any], response: ChatResponse) -> None:
        """Store `response`, evicting the least recently used entries beyond the limit."""
        slot = (tenant, self.key(request_body))
        self._entries[slot] = (self._clock() + self.ttl_s, response)
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

        if ttl_s <= 0:
            raise ValueError("ttl_s must be > 0")
        self.ttl_s = ttl_s
        self.prefix = prefix
        self._redis: redis.asyncio.Redis = redis.asyncio.Redis.from_url(url)

    def redis_key(self, tenant: str, request_body: Mapping[str, Any]) -> str:
        # Hashing the tenant too keeps any tenant name (colons included) out of the syntax.
        return self.prefix + _digest([tenant, ExactCache.key(request_body)])

    async def get(self, tenant: str, request_body: Mapping[str, Any]) -> ChatResponse | None:
        raw = await self._redis.get(self.redis_key(tenant, request_body))
        if raw is None:
            return None
        data = orjson.loads(raw)
        data["usage"] = Usage(**data["usage"])
        return ChatResponse(**data)

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


# -- semantic ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SemanticKey:
    """What a semantic entry is filed under: the last user message's unit embedding and
    the hash of everything else. Compute it once per request (`SemanticCache.key`) and
    pass it to both `get` and `put` to embed only once."""

    vector: Vector
    context: str

    @property
    def context_tag(self) -> int:
        """The first 8 bytes of the context hash, for vectorised pre-filtering."""
        return int(self.context[:16], 16) - (1 << 63)


class _Scope:
    """The entries of one (tenant, route): a ring buffer of rows, oldest overwritten."""

    def __init__(self, dims: int, capacity: int) -> None:
        self.capacity = capacity
        size = min(capacity, 64)
        self.vectors = np.zeros((size, dims), dtype=np.float32)
        self.tags = np.zeros(size, dtype=np.int64)
        self.expires = np.full(size, -np.inf)
        self.contexts: list[str] = [""] * size
        self.responses: list[ChatResponse | None] = [None] * size
        self.count = 0  # rows ever written
        self.dims = dims

    def add(self, key: SemanticKey, response: ChatResponse, expires: float) -> None:
        if self.count < self.capacity and self.count == len(self.tags):
            self._grow(min(self.capacity, 2 * len(self.tags)))
        row = self.count % self.capacity
        self.vectors[row] = key.vector
        self.tags[row] = key.context_tag
        self.expires[row] = expires
        self.contexts[row] = key.context
        self.responses[row] = response
        self.count += 1

    def best(self, key: SemanticKey, now: float) -> tuple[int, float] | None:
        rows = np.flatnonzero((self.tags == key.context_tag) & (self.expires > now))
        if rows.size == 0:
            return None
        scores = self.vectors[rows] @ key.vector
        best = int(np.argmax(scores))
        return int(rows[best]), float(scores[best])

    def _grow(self, size: int) -> None:
        extra = size - len(self.tags)
        self.vectors = np.vstack([self.vectors, np.zeros((extra, self.dims), dtype=np.float32)])
        self.tags = np.concatenate([self.tags, np.zeros(extra, dtype=np.int64)])
        self.expires = np.concatenate([self.expires, np.full(extra, -np.inf)])
        self.contexts.extend([""] * extra)
        self.responses.extend([None] * extra)


class SemanticCache:
    """Answers for requests whose last user message *means* the same as a stored one.

    Scoped per (tenant, route); see the module docs for why the rest of the conversation
    must match exactly. Each scope keeps at most `max_entries_per_scope` entries, the
    oldest overwritten first; lookups are one matrix-vector product over the scope.

    Example:
        >>> cache = SemanticCache(client, ttl_s=3600)
        >>> key = await cache.key(messages)
        >>> hit = await cache.get("acme", "support", messages, 0.95, key=key)
        >>> if hit is None:
        ...     await cache.put("acme", "support", messages, response, key=key)

    Args:
        client: computes the embeddings.
        embedding_model: ``PROVIDER/MODEL`` of the embedding model.
        ttl_s: seconds an entry is served after it was stored.
        max_entries_per_scope: entries kept per (tenant, route).
        clock: monotonic seconds (tests inject one).
    """

    def __init__(
        self,
        client: Client,
        *,
        embedding_model: str = "local/all-minilm-l6-v2",
        ttl_s: float,
        max_entries_per_scope: int = 10_000,
        clock: Clock = time.monotonic,
    ) -> None:
        if ttl_s <= 0 or max_entries_per_scope < 1:
            raise ValueError("ttl_s must be > 0 and max_entries_per_scope >= 1")
        self.client = client
        self.embedding_model = embedding_model
        self.ttl_s = ttl_s
        self.max_entries_per_scope = max_entries_per_scope
        self._clock = clock
        self._scopes: dict[tuple[str, str], _Scope] = {}

    async def key(
        self, messages: list[Message], params: Mapping[str, Any] | None = None
    ) -> SemanticKey | None:
        """The entry key for `messages` (and the answer-changing `params`), or None when
        there is no user text to compare (such requests are not semantically cacheable)."""
        index = _last_user_index(messages)
        if index is None:
            return None
        text = _text(messages[index].get("content")).strip()
        if not text:
            return None
        others = [m if i != index else {"role": "user"} for i, m in enumerate(messages)]
        extra = normalised_request({**(params or {}), "model": None, "messages": None})
        context = _digest({"messages": _normalise(others), "params": extra})
        embedded = await self.client.embed(self.embedding_model, [text])
        vector = np.asarray(embedded.vectors[0], dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:
            return None
        return SemanticKey(vector / norm, context)

    async def get(
        self,
        tenant: str,
        route: str,
        messages: list[Message],
        threshold: float,
        *,
        params: Mapping[str, Any] | None = None,
        key: SemanticKey | None = None,
    ) -> tuple[ChatResponse, float] | None:
        """The closest fresh entry with the same context and cosine ≥ `threshold`, and
        its similarity; None otherwise."""
        scope = self._scopes.get((tenant, route))
        if scope is None:
            return None
        key = key or await self.key(messages, params)
        if key is None or key.vector.shape[0] != scope.dims:
            return None
        found = scope.best(key, self._clock())
        if found is None:
            return None
        row, similarity = found
        response = scope.responses[row]
        if similarity < threshold or response is None or scope.contexts[row] != key.context:
            return None
        return response, similarity

    async def put(
        self,
        tenant: str,
        route: str,
        messages: list[Message],
        response: ChatResponse,
        *,
        params: Mapping[str, Any] | None = None,
        key: SemanticKey | None = None,
    ) -> None:
        """Store `response` for `messages` (a no-op when they have no user text)."""
        key = key or await self.key(messages, params)
        if key is None:
            return
        scope = self._scopes.get((tenant, route))
        if scope is None or scope.dims != key.vector.shape[0]:
            scope = _Scope(int(key.vector.shape[0]), self.max_entries_per_scope)
            self._scopes[(tenant, route)] = scope
        scope.add(key, response, self._clock() + self.ttl_s)


def _last_user_index(messages: list[Message]) -> int | None:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return index
    return None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""
