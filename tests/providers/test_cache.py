"""The response cache on both backends: hit, miss, TTL, replay, modes."""

from __future__ import annotations

import time

import pytest

from lockgate.errors import ReplayMiss
from lockgate.providers import ChatRequest, ChatResponse, ResponseCache, Usage, cache_key
from lockgate.store import Store

REQUEST = ChatRequest(
    model="gpt-4o-mini-2024-07-18",
    messages=[{"role": "user", "content": "hello"}],
    temperature=0.0,
    seed=7,
)
RESPONSE = ChatResponse(
    model="gpt-4o-mini-2024-07-18",
    content="hi there",
    finish_reason="stop",
    usage=Usage(input_tokens=8, output_tokens=2),
)


def test_key_covers_provider_model_messages_params_and_seed() -> None:
    base = cache_key("openai", REQUEST)
    variants = [
        cache_key("vllm", REQUEST),
        cache_key("openai", ChatRequest(**{**REQUEST.__dict__, "model": "gpt-4o-2024-08-06"})),
        cache_key(
            "openai",
            ChatRequest(
                **{**REQUEST.__dict__, "messages": [{"role": "user", "content": "hello!"}]}
            ),
        ),
        cache_key("openai", ChatRequest(**{**REQUEST.__dict__, "temperature": 0.1})),
        cache_key("openai", ChatRequest(**{**REQUEST.__dict__, "seed": 8})),
        cache_key("openai", ChatRequest(**{**REQUEST.__dict__, "extra": {"top_k": 3}})),
    ]
    assert len({base, *variants}) == 7
    assert cache_key("openai", ChatRequest(**REQUEST.__dict__)) == base


def test_miss_then_hit_returns_the_same_response(store: Store) -> None:
    cache = ResponseCache(store)
    assert cache.get("openai", REQUEST) is None
    cache.put("openai", REQUEST, RESPONSE)
    assert cache.get("openai", REQUEST) == RESPONSE
    assert cache.count() == 1
    cache.put("openai", REQUEST, RESPONSE)  # re-recording replaces, never duplicates
    assert cache.count() == 1


def test_entries_expire_after_ttl_but_replay_still_reads_them(store: Store) -> None:
    ResponseCache(store, ttl_seconds=0.05).put("openai", REQUEST, RESPONSE)
    time.sleep(0.1)
    assert ResponseCache(store).get("openai", REQUEST) is None
    assert ResponseCache(store, mode="replay").get("openai", REQUEST) == RESPONSE
    assert ResponseCache(store).purge_expired() == 1
    assert ResponseCache(store).count() == 0


def test_replay_miss_fails_loudly(store: Store) -> None:
    with pytest.raises(ReplayMiss, match="no recorded response for openai/gpt-4o-mini"):
        ResponseCache(store, mode="replay").get("openai", REQUEST)


def test_modes(store: Store) -> None:
    ResponseCache(store, mode="off").put("openai", REQUEST, RESPONSE)
    assert ResponseCache(store).count() == 0
    refresh = ResponseCache(store, mode="refresh")
    refresh.put("openai", REQUEST, RESPONSE)
    assert refresh.get("openai", REQUEST) is None  # refresh never reads
    assert ResponseCache(store).get("openai", REQUEST) == RESPONSE
    replay = ResponseCache(store, mode="replay")
    replay.put("openai", ChatRequest(model="m", messages=[]), RESPONSE)  # replay never writes
    assert replay.count() == 1
    with pytest.raises(ValueError, match="cache mode"):
        ResponseCache(store, mode="sometimes")  # type: ignore[arg-type]
