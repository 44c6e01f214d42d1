"""`Client` end to end against the scripted upstream over real sockets."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from lockgate.config import Settings, load_settings
from lockgate.errors import ConfigError, RateLimited, ReplayMiss, UpstreamError
from lockgate.providers import Client, StreamResult
from lockgate.testing import Rule, ScriptedUpstream

RULES = [
    Rule(match=r"refund", reply="billing", usage=(20, 1)),
    Rule(match=r"flaky", status=429, retry_after=0.05, times=2),
    Rule(match=r"always-limited", status=429, retry_after=0.01),
    Rule(match=r"boom", status=500),
    Rule(match=r"cut", drop_after_chunks=2),
    Rule(match=None, reply="other answer here", usage=(10, 3)),
]


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream(RULES) as up:
        yield up


@pytest.fixture
def client_settings(upstream: ScriptedUpstream, tmp_path: Path) -> Settings:
    upstream.set_rules(RULES)
    return load_settings(
        home=tmp_path / "home",
        providers={
            "scripted": {
                "type": "openai",
                "base_url": upstream.url + "/v1",
                "max_retries": 3,
                "retry_base_delay": 0.01,
            }
        },
        aliases={
            "triage-model": "scripted/gpt-4o-mini-2024-07-18",
            "loop-a": "loop-b",
            "loop-b": "loop-a",
        },
    )


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Classify."}, {"role": "user", "content": text}]


async def test_chat_resolves_alias_prices_and_caches(
    client_settings: Settings, upstream: ScriptedUpstream
) -> None:
    async with Client(client_settings) as client:
        first = await client.chat("triage-model", ask("I want a refund"), temperature=0)
        assert first.text == "billing"
        assert first.resolved.ref == "scripted/gpt-4o-mini-2024-07-18"
        assert first.resolved.alias == "triage-model"
        assert (first.usage.input_tokens, first.usage.output_tokens) == (20, 1)
        assert first.cache == "miss"
        # The scripted server is an openai-type provider serving a real OpenAI model id,
        # so the bundled price applies: 20 x 0.15 + 1 x 0.60 per million tokens.
        assert first.cost.usd == Decimal("0.0000036")
        calls = len(upstream.requests)
        again = await client.chat("triage-model", ask("I want a refund"), temperature=0)
        assert again.cache == "hit"
        assert again.text == "billing"
        assert len(upstream.requests) == calls  # served from the cache
        different = await client.chat("triage-model", ask("I want a refund"), temperature=0.5)
        assert different.cache == "miss"


async def test_retries_honour_retry_after_then_succeed(client_settings: Settings) -> None:
    async with Client(client_settings, cache_mode="off") as client:
        result = await client.chat("scripted/gpt-4o-mini-2024-07-18", ask("flaky please"))
    assert result.retries == 2
    assert result.text == "other answer here"
    assert result.latency_s >= 0.1  # two waits of at least Retry-After = 0.05 s


async def test_errors_are_typed_and_never_cached(
    client_settings: Settings, upstream: ScriptedUpstream
) -> None:
    async with Client(client_settings) as client:
        with pytest.raises(RateLimited):
            await client.chat("scripted/gpt-4o-mini-2024-07-18", ask("always-limited"))
        with pytest.raises(UpstreamError):
            await client.chat("scripted/gpt-4o-mini-2024-07-18", ask("boom"))
        assert client.cache is not None
        assert client.cache.count() == 0


async def test_stream_reassembles_and_is_replayed_from_cache(client_settings: Settings) -> None:
    async with Client(client_settings) as client:
        sink = StreamResult(client.resolve("triage-model"))
        pieces = [c.delta async for c in client.stream("triage-model", ask("hello"), into=sink)]
        assert "".join(pieces) == "other answer here"
        assert sink.result is not None
        assert sink.result.cache == "miss"
        assert sink.result.time_to_first_token_s is not None
        replay = StreamResult(client.resolve("triage-model"))
        again = [c.delta async for c in client.stream("triage-model", ask("hello"), into=replay)]
        assert "".join(again) == "other answer here"
        assert len(again) > 1
        assert replay.result is not None and replay.result.cache == "hit"


async def test_stream_dropped_midway_raises_after_first_chunks(client_settings: Settings) -> None:
    async with Client(client_settings, cache_mode="off") as client:
        received: list[str] = []
        with pytest.raises(UpstreamError):
            async for chunk in client.stream("triage-model", ask("cut me off")):
                received.append(chunk.delta)
        assert any(received)


async def test_replay_mode_reproduces_or_fails(client_settings: Settings) -> None:
    async with Client(client_settings) as recorder:
        recorded = await recorder.chat("triage-model", ask("refund me"), seed=1)
    async with Client(client_settings, cache_mode="replay") as replayer:
        replayed = await replayer.chat("triage-model", ask("refund me"), seed=1)
        assert replayed.response == recorded.response
        with pytest.raises(ReplayMiss):
            await replayer.chat("triage-model", ask("refund me"), seed=2)


def test_resolution_errors_are_actionable(client_settings: Settings) -> None:
    client = Client(client_settings, cache_mode="off")
    with pytest.raises(ConfigError, match="names no provider: write PROVIDER/MODEL"):
        client.resolve("gpt-4o")
    with pytest.raises(ConfigError, match="unknown provider 'nope'"):
        client.resolve("nope/model")
    with pytest.raises(ConfigError, match="aliases loop"):
        client.resolve("loop-a")
    assert client.resolve("local/smollm2-135m-instruct").provider_type == "local"
    assert client.resolve("openai/gpt-4o-2024-08-06").provider_type == "openai"


async def test_streamed_tool_calls_are_merged_by_index(
    client_settings: Settings, upstream: ScriptedUpstream
) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "lookup_invoice", "arguments": '{"invoice": "INV-42"}'},
    }
    upstream.set_rules([Rule(match=None, tool_calls=[call])])
    async with Client(client_settings, cache_mode="off") as client:
        sink = StreamResult(client.resolve("triage-model"))
        async for _ in client.stream("triage-model", ask("find my invoice"), into=sink):
            pass
    assert sink.result is not None
    assert sink.result.response.tool_calls == [
        {"id": "call_1", "type": "function", "function": call["function"]}
    ]
    assert sink.result.response.finish_reason == "tool_calls"


async def test_price_overrides_by_instance_and_cache_keys_by_server(
    upstream: ScriptedUpstream, tmp_path: Path
) -> None:
    upstream.set_rules(RULES)
    with ScriptedUpstream([Rule(match=None, reply="from the other server")]) as other:

        def settings_for(url: str) -> Settings:
            return load_settings(
                home=tmp_path / "home",
                providers={"scripted": {"type": "openai", "base_url": url + "/v1"}},
                prices={"scripted/house-llama": {"input_per_mtok": 1, "output_per_mtok": 2}},
            )

        async with Client(settings_for(upstream.url)) as client:
            first = await client.chat("scripted/house-llama", ask("refund"))
        # 20 input tokens x $1/Mtok + 1 output token x $2/Mtok.
        assert first.cost.usd == Decimal("0.000022")
        async with Client(settings_for(other.url)) as client:
            moved = await client.chat("scripted/house-llama", ask("refund"))
        assert moved.cache == "miss"
        assert moved.text == "from the other server"
