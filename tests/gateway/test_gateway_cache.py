"""The gateway's exact cache (in memory) and semantic cache (real MiniLM embeddings)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from lockgate.config import load_settings
from lockgate.gateway._cache import ExactCache, RedisExactCache, TieredExactCache
from lockgate.gateway._semantic import SemanticCache
from lockgate.providers import ChatResponse, Client, Usage


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def answer(text: str) -> ChatResponse:
    return ChatResponse(model="m", content=text, finish_reason="stop", usage=Usage(5, 2))


def body(text: str = "hello", **params: Any) -> dict[str, Any]:
    return {
        "model": "fast",
        "messages": [{"role": "user", "content": text}],
        "temperature": 0.2,
        **params,
    }


# -- exact ---------------------------------------------------------------------------------


def test_exact_hit_and_miss() -> None:
    cache = ExactCache(ttl_s=60)
    assert cache.get("acme", body()) is None
    cache.put("acme", body(), answer("hi there"))
    hit = cache.get("acme", body())
    assert hit is not None and hit.content == "hi there"
    assert cache.get("acme", body("goodbye")) is None


def test_exact_entries_are_per_tenant() -> None:
    cache = ExactCache(ttl_s=60)
    cache.put("acme", body(), answer("for acme"))
    assert cache.get("globex", body()) is None
    cache.put("globex", body(), answer("for globex"))
    assert cache.get("acme", body()).content == "for acme"  # type: ignore[union-attr]
    assert cache.get("globex", body()).content == "for globex"  # type: ignore[union-attr]


def test_exact_entries_expire_after_the_ttl() -> None:
    clock = FakeClock()
    cache = ExactCache(ttl_s=60, clock=clock)
    cache.put("acme", body(), answer("fresh"))
    clock.now += 59.9
    assert cache.get("acme", body()) is not None
    clock.now += 0.1
    assert cache.get("acme", body()) is None
    assert len(cache) == 0  # the expired entry is gone, not just hidden


def test_exact_evicts_the_least_recently_used() -> None:
    cache = ExactCache(ttl_s=60, max_entries=2)
    cache.put("acme", body("one"), answer("1"))
    cache.put("acme", body("two"), answer("2"))
    assert cache.get("acme", body("one")) is not None  # "one" is now the most recent
    cache.put("acme", body("three"), answer("3"))
    assert len(cache) == 2
    assert cache.get("acme", body("two")) is None
    assert cache.get("acme", body("one")) is not None
    assert cache.get("acme", body("three")) is not None


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.9},
        {"model": "smart"},
        {"max_tokens": 10},
        {"seed": 7},
        {"stop": ["\n"]},
        {"tools": [{"type": "function", "function": {"name": "lookup"}}]},
        {"response_format": {"type": "json_object"}},
        {"metadata": {"customer": "x"}},
        {
            "messages": [
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": "hello"},
            ]
        },
    ],
)
def test_params_that_change_the_answer_change_the_key(change: dict[str, Any]) -> None:
    cache = ExactCache(ttl_s=60)
    cache.put("acme", body(), answer("original"))
    assert cache.get("acme", {**body(), **change}) is None


@pytest.mark.parametrize(
    "change",
    [
        {"stream": True},
        {"stream": True, "stream_options": {"include_usage": True}},
        {"user": "end-user-42"},
        {"temperature": 0.2, "top_p": None},  # unset is the same as absent
    ],
)
def test_delivery_fields_do_not_change_the_key(change: dict[str, Any]) -> None:
    cache = ExactCache(ttl_s=60)
    cache.put("acme", body(), answer("original"))
    hit = cache.get("acme", {**body(), **change})
    assert hit is not None and hit.content == "original"


def test_key_ignores_key_order_and_integral_float_spelling() -> None:
    one = {"temperature": 0, "model": "fast", "messages": [{"content": "x", "role": "user"}]}
    two = {"messages": [{"role": "user", "content": "x"}], "model": "fast", "temperature": 0.0}
    assert ExactCache.key(one) == ExactCache.key(two)


REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def redis_cache() -> AsyncIterator[RedisExactCache]:
    prefix = f"lockgate-test:{uuid.uuid4().hex}:"
    cache = RedisExactCache(REDIS_URL, ttl_s=60, prefix=prefix)
    yield cache
    await cache.aclose()
    raw = redis.asyncio.Redis.from_url(REDIS_URL)
    keys = [key async for key in raw.scan_iter(match=prefix + "*")]
    if keys:
        await raw.delete(*keys)
    await raw.aclose()


async def test_redis_exact_cache_round_trips_per_tenant(redis_cache: RedisExactCache) -> None:
    stored = ChatResponse(
        model="m",
        content="from redis",
        finish_reason="tool_calls",
        usage=Usage(7, 3, cached_input_tokens=2, estimated=True),
        tool_calls=[{"id": "c1", "type": "function", "function": {"name": "f"}}],
        provider="openai",
    )
    assert await redis_cache.get("acme", body()) is None
    await redis_cache.put("acme", body(), stored)
    assert await redis_cache.get("acme", {**body(), "stream": True, "user": "u"}) == stored
    assert await redis_cache.get("globex", body()) is None
    assert await redis_cache.get("acme", body(temperature=1)) is None


async def test_redis_exact_entries_expire(redis_cache: RedisExactCache) -> None:
    redis_cache.ttl_s = 0.2
    await redis_cache.put("acme", body(), answer("brief"))
    assert await redis_cache.get("acme", body()) is not None
    await asyncio.sleep(0.3)
    assert await redis_cache.get("acme", body()) is None


# -- semantic (real local MiniLM embeddings) -----------------------------------------------


@pytest.fixture
async def semantic(tmp_path: Path) -> AsyncIterator[tuple[SemanticCache, FakeClock]]:
    clock = FakeClock()
    async with Client(load_settings(home=tmp_path)) as client:
        yield SemanticCache(client, ttl_s=60, clock=clock), clock


def chat(text: str, system: str = "You are a support assistant.") -> list[dict[str, Any]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


@pytest.mark.slow
async def test_semantic_hit_for_a_paraphrase_miss_for_another_question(
    semantic: tuple[SemanticCache, FakeClock],
) -> None:
    cache, _ = semantic
    await cache.put("acme", "support", chat("how can I reset my password"), answer("Use 'Forgot'"))

    hit = await cache.get("acme", "support", chat("How do I reset my password?"), 0.9)
    assert hit is not None
    response, similarity = hit
    assert response.content == "Use 'Forgot'"
    assert 0.9 <= similarity <= 1.0

    assert await cache.get("acme", "support", chat("How do I delete my account?"), 0.9) is None


@pytest.mark.slow
async def test_semantic_needs_the_same_context_tenant_route_and_params(
    semantic: tuple[SemanticCache, FakeClock],
) -> None:
    cache, clock = semantic
    question = "how can I reset my password"
    await cache.put("acme", "support", chat(question), answer("stored"))
    assert await cache.get("acme", "support", chat(question), 0.99) is not None

    other_system = chat(question, system="You are a pirate. Answer in pirate speak.")
    assert await cache.get("acme", "support", other_system, 0.9) is None
    assert await cache.get("globex", "support", chat(question), 0.9) is None
    assert await cache.get("acme", "sales", chat(question), 0.9) is None
    hotter = await cache.get("acme", "support", chat(question), 0.9, params={"temperature": 1})
    assert hotter is None

    clock.now += 60
    assert await cache.get("acme", "support", chat(question), 0.9) is None  # expired


@pytest.mark.slow
async def test_semantic_returns_the_closest_entry_and_reuses_a_key(
    semantic: tuple[SemanticCache, FakeClock],
) -> None:
    cache, _ = semantic
    await cache.put("acme", "support", chat("How do I delete my account?"), answer("delete"))
    await cache.put("acme", "support", chat("how can I reset my password"), answer("reset"))
    key = await cache.key(chat("How do I reset my password?"))
    assert key is not None
    hit = await cache.get("acme", "support", [], 0.5, key=key)  # messages unused with a key
    assert hit is not None and hit[0].content == "reset"
    # No user text: nothing to compare, so neither stored nor found.
    assert await cache.key([{"role": "system", "content": "Hello"}]) is None


async def test_semantic_scope_keeps_at_most_its_limit(tmp_path: Path) -> None:
    # Embeddings from a fake client: a one-hot vector per distinct text.
    class OneHot:
        def __init__(self) -> None:
            self.seen: list[str] = []

        async def embed(self, model: str, inputs: list[str]) -> Any:
            from lockgate.providers import EmbeddingResponse

            vectors = []
            for text in inputs:
                if text not in self.seen:
                    self.seen.append(text)
                vector = [0.0] * 8
                vector[self.seen.index(text)] = 1.0
                vectors.append(vector)
            return EmbeddingResponse(model=model, vectors=vectors, usage=Usage())

    cache = SemanticCache(OneHot(), ttl_s=60, max_entries_per_scope=3)  # type: ignore[arg-type]
    for i in range(5):
        await cache.put("acme", "r", chat(f"q{i}"), answer(str(i)))
    found = [await cache.get("acme", "r", chat(f"q{i}"), 0.99) for i in range(5)]
    assert [f[0].content if f else None for f in found] == [None, None, "2", "3", "4"]


async def test_a_redis_that_is_down_is_a_miss_not_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = RedisExactCache("redis://127.0.0.1:1/0", ttl_s=60)  # nothing listens on port 1
    cache = TieredExactCache(ExactCache(ttl_s=60), down)
    try:
        stored = answer("still served")
        assert await cache.get("acme", body()) is None
        await cache.put("acme", body(), stored)
        assert await cache.get("acme", body()) is stored  # the local tier still answers
    finally:
        await cache.aclose()
    assert cache.shared_errors == 2
    assert "Redis read failed" in caplog.text
