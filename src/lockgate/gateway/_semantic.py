"""The semantic response cache, opt-in per route.

An entry is the normalised embedding of the last user
message plus a hash of everything else (the other messages, with the last user message's
position, and the answer-changing params). A lookup matches only entries whose context
hash is identical and whose cosine similarity is at least the threshold. The context must
match exactly because the embedding sees only the final question: "and in French?"
after two different conversations, or the same question under two different system
prompts (persona, output format, policy), needs different answers however similar the
final words are.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lockgate.gateway._cache import digest, normalise, normalised_request
from lockgate.providers._client import Client
from lockgate.providers._types import ChatResponse, Message, content_text

__all__ = ["SemanticCache", "SemanticKey"]

Clock = Callable[[], float]
Vector = npt.NDArray[np.float32]


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
        text = content_text(messages[index].get("content")).strip()
        if not text:
            return None
        others = [m if i != index else {"role": "user"} for i, m in enumerate(messages)]
        extra = normalised_request({**(params or {}), "model": None, "messages": None})
        context = digest({"messages": normalise(others), "params": extra})
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
