"""The Anthropic provider against the scripted upstream on a real socket (translation both
ways end to end, every injected fault), plus MockTransport for what cannot be scripted.

The pure translation is tested in test_anthropic_translate.py.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from lockgate.config import ProviderConfig, Settings, Timeouts
from lockgate.errors import (
    AuthError,
    ContextWindowExceeded,
    ProviderError,
    RateLimited,
    Timeout,
    UpstreamError,
)
from lockgate.providers._anthropic import AnthropicProvider, create
from lockgate.providers._anthropic_translate import RESPONSE_TOOL
from lockgate.providers._retry import RetryPolicy, with_retries
from lockgate.providers._types import ChatRequest, Provider, Usage
from lockgate.testing import Rule, ScriptedUpstream
from tests.helpers import FakeSleep, collect

MODEL = "claude-test"
WHERE = f"provider 'claude' (anthropic), model '{MODEL}'"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
WEATHER_CALL = {
    "id": "toolu_1",
    "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
}
SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "triage",
        "schema": {"type": "object", "properties": {"category": {"type": "string"}}},
    },
}

Make = Callable[..., AnthropicProvider]


def ask(text: str, **params: Any) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=[{"role": "user", "content": text}], **params)


# -- against the scripted upstream ---------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_anthropic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "CLAUDE_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def make(up: ScriptedUpstream) -> AsyncIterator[Make]:
    made: list[AnthropicProvider] = []

    def make(**kwargs: Any) -> AnthropicProvider:
        kwargs.setdefault("base_url", up.url)
        provider = AnthropicProvider("claude", ProviderConfig(**kwargs), Settings())
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


async def test_chat_translates_both_ways(
    up: ScriptedUpstream, make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    up.set_rules([Rule(match="refund", reply="billing", usage=(12, 3))])
    request = ChatRequest(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Classify."},
            {"role": "system", "content": "One word."},
            {"role": "user", "content": "I want"},
            {"role": "user", "content": "a refund"},
        ],
        stop=["\n\n"],
        temperature=0.0,
    )
    response = await make().chat(request)
    assert response.content == "billing"
    assert response.finish_reason == "stop"
    assert response.usage == Usage(input_tokens=12, output_tokens=3)
    assert response.provider == "claude"
    assert response.id.startswith("msg_")
    sent = up.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    # An entry with its own base_url never receives the default ANTHROPIC_API_KEY.
    assert "x-api-key" not in sent.headers
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.body is not None
    assert sent.body["system"] == "Classify.\n\nOne word."
    assert sent.body["stop_sequences"] == ["\n\n"]
    assert sent.body["max_tokens"] == 1024
    assert sent.body["temperature"] == 0.0
    assert sent.body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "I want"}, {"type": "text", "text": "a refund"}],
        }
    ]


async def test_stream_yields_deltas_then_finish_and_usage(up: ScriptedUpstream, make: Make) -> None:
    up.set_rules([Rule(reply="one two three", usage=(5, 3), finish_reason="length")])
    chunks = await collect(make(options={"default_max_tokens": 64}).stream(ask("count")))
    assert [c.delta for c in chunks] == ["one ", "two ", "three", ""]
    assert chunks[-1].finish_reason == "length"
    assert chunks[-1].usage == Usage(input_tokens=5, output_tokens=3)
    body = up.requests[-1].body
    assert body is not None
    assert (body["stream"], body["max_tokens"]) == (True, 64)


async def test_tool_calls_whole_and_streamed(up: ScriptedUpstream, make: Make) -> None:
    up.set_rules([Rule(match="weather", tool_calls=[WEATHER_CALL])])
    provider = make()
    request = ask("weather in Paris?", tools=[WEATHER_TOOL])
    response = await provider.chat(request)
    assert response.finish_reason == "tool_calls"
    assert response.content is None
    assert response.tool_calls is not None
    [call] = response.tool_calls
    assert (call["id"], call["type"], call["function"]["name"]) == (
        "toolu_1",
        "function",
        "get_weather",
    )
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Paris"}
    body = up.requests[-1].body
    assert body is not None
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather in a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
        }
    ]

    chunks = await collect(provider.stream(request))
    calls = [c for chunk in chunks for c in chunk.tool_calls or ()]
    assert calls[0]["id"] == "toolu_1"
    assert calls[0]["function"]["name"] == "get_weather"
    arguments = "".join(c["function"]["arguments"] for c in calls)
    assert orjson.loads(arguments) == {"city": "Paris"}
    assert chunks[-1].finish_reason == "tool_calls"


async def test_json_schema_answer_comes_back_as_content(up: ScriptedUpstream, make: Make) -> None:
    forced = {
        "id": "toolu_r",
        "function": {"name": RESPONSE_TOOL, "arguments": {"category": "billing"}},
    }
    up.set_rules([Rule(tool_calls=[forced])])
    provider = make()
    request = ask("classify: refund", response_format=SCHEMA_FORMAT)
    response = await provider.chat(request)
    assert orjson.loads(response.content or "") == {"category": "billing"}
    assert response.tool_calls is None
    assert response.finish_reason == "stop"
    body = up.requests[-1].body
    assert body is not None
    assert body["tool_choice"] == {"type": "tool", "name": RESPONSE_TOOL}

    chunks = await collect(provider.stream(request))
    assert orjson.loads("".join(c.delta for c in chunks)) == {"category": "billing"}
    assert all(c.tool_calls is None for c in chunks)
    assert chunks[-1].finish_reason == "stop"


async def test_429_with_retry_after_then_recovery(up: ScriptedUpstream, make: Make) -> None:
    up.set_rules([Rule(match="flaky", status=429, retry_after=1.5, times=2), Rule(reply="done")])
    provider = make()
    with pytest.raises(RateLimited) as raised:
        await provider.chat(ask("flaky"))
    assert raised.value.retry_after == 1.5
    assert str(raised.value).startswith(f"{WHERE}: HTTP 429: rate_limit_error: ")
    sleep = FakeSleep()
    response = await with_retries(
        lambda: provider.chat(ask("flaky")), RetryPolicy(max_retries=3), sleep=sleep
    )
    assert response.content == "done"
    assert len(sleep.delays) == 1  # one 429 was left of the two
    assert sleep.delays[0] >= 1.5


@pytest.mark.parametrize("status", [500, 529])
async def test_server_errors_and_overloaded_are_retryable(
    up: ScriptedUpstream, make: Make, status: int
) -> None:
    up.set_rules([Rule(status=status, error_message="Overloaded", times=1), Rule(reply="ok!")])
    provider = make()
    with pytest.raises(UpstreamError) as raised:
        await provider.chat(ask("x"))
    assert raised.value.status == status
    kind = "overloaded_error" if status == 529 else "api_error"
    assert str(raised.value) == f"{WHERE}: HTTP {status}: {kind}: Overloaded"
    assert (await provider.chat(ask("x"))).content == "ok!"


async def test_401_names_the_variable_to_set(up: ScriptedUpstream, make: Make) -> None:
    up.set_rules([Rule(status=401, error_message="invalid x-api-key")])
    with pytest.raises(AuthError, match="set api_key_env for provider"):
        await make().chat(ask("hi"))
    with pytest.raises(AuthError, match="set the environment variable CLAUDE_KEY"):
        await collect(make(api_key_env="CLAUDE_KEY").stream(ask("hi")))
    assert "x-api-key" not in up.requests[-1].headers


async def test_key_from_the_configured_variable_or_the_default_host(
    up: ScriptedUpstream, make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-default")
    monkeypatch.setenv("CLAUDE_KEY", "sk-ant-claude")
    await make(api_key_env="CLAUDE_KEY").chat(ask("hi"))
    assert up.requests[-1].headers["x-api-key"] == "sk-ant-claude"
    # ANTHROPIC_BASE_URL redirects the default entry, which keeps its default key.
    monkeypatch.setenv("ANTHROPIC_BASE_URL", up.url)
    await make(base_url=None).chat(ask("hi"))
    assert up.requests[-1].headers["x-api-key"] == "sk-ant-default"


async def test_prompt_too_long_is_context_window_exceeded(up: ScriptedUpstream, make: Make) -> None:
    up.set_rules(
        [Rule(status=400, error_message="prompt is too long: 210000 tokens > 200000 maximum")]
    )
    with pytest.raises(ContextWindowExceeded, match="prompt is too long") as raised:
        await make().chat(ask("long"))
    assert raised.value.status == 400


async def test_other_400_is_not_retryable(up: ScriptedUpstream, make: Make) -> None:
    up.set_rules([Rule(status=400, error_message="max_tokens: must be positive")])
    with pytest.raises(ProviderError) as raised:
        await make().chat(ask("x"))
    assert type(raised.value) is ProviderError
    assert str(raised.value) == (
        f"{WHERE}: HTTP 400: invalid_request_error: max_tokens: must be positive"
    )


async def test_timeouts(up: ScriptedUpstream, make: Make) -> None:
    up.set_rules([Rule(match="slow", delay=5.0), Rule(match="hang", hang=True)])
    slow = make(timeouts=Timeouts(connect=1.0, read=0.2, total=30.0))
    with pytest.raises(Timeout, match=r"read timeout: no data from .* for 0\.2s"):
        await slow.chat(ask("slow"))
    hanging = make(timeouts=Timeouts(connect=1.0, read=30.0, total=0.3))
    with pytest.raises(Timeout, match="total deadline"):
        await collect(hanging.stream(ask("hang")))


async def test_drop_mid_stream(up: ScriptedUpstream, make: Make) -> None:
    up.set_rules([Rule(match="cut", reply="one two three four five", drop_after_chunks=3)])
    received: list[str] = []
    with pytest.raises(UpstreamError, match="stream ended early after 3 chunks") as raised:
        async for chunk in make().stream(ask("cut")):
            received.append(chunk.delta)
    assert received == ["one ", "two ", "three "]
    assert str(raised.value).startswith(WHERE)


async def test_embed_is_refused_without_a_call(up: ScriptedUpstream, make: Make) -> None:
    with pytest.raises(ProviderError, match="Anthropic has no embeddings endpoint") as raised:
        await make().embed(MODEL, ["x"])
    assert type(raised.value) is ProviderError
    assert up.requests == []


async def test_count_tokens_is_an_estimate(make: Make) -> None:
    counted = make().count_tokens(MODEL, [{"role": "user", "content": "Is my card blocked?"}])
    assert counted.tokens > 0
    assert not counted.exact


def test_defaults_and_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = create("claude", ProviderConfig(), Settings())
    assert isinstance(provider, Provider)
    assert provider.base_url == "https://api.anthropic.com"
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://proxy.test/")
    assert create("claude", ProviderConfig(), Settings()).base_url == "http://proxy.test"


# -- client logic scripted as verbatim bodies ---------------------------------------------


def sse(*events: dict[str, Any]) -> Rule:
    body = b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events
    )
    return Rule(body=body, headers={"content-type": "text/event-stream"})


START = {"type": "message_start", "message": {"model": MODEL, "usage": {"input_tokens": 3}}}
TEXT_START = {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}
HELLO = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}


async def test_stream_error_event_after_first_chunk(up: ScriptedUpstream, make: Make) -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    up.set_rules([sse(START, {"type": "ping"}, TEXT_START, HELLO, error)])
    received: list[str] = []
    with pytest.raises(UpstreamError, match=r"after 1 chunks: .*overloaded_error") as raised:
        async for chunk in make().stream(ask("x")):
            received.append(chunk.delta)
    assert received == ["Hi"]
    assert "\n" not in str(raised.value)


async def test_stream_without_message_stop_is_an_upstream_error(
    up: ScriptedUpstream, make: Make
) -> None:
    up.set_rules([sse(START, TEXT_START, HELLO)])
    with pytest.raises(UpstreamError, match=r"stream ended early after 1 chunks$"):
        await collect(make().stream(ask("x")))


async def test_malformed_json_is_an_upstream_error(up: ScriptedUpstream, make: Make) -> None:
    up.set_rules([Rule(match="bad", body="not json"), Rule(body='{"type": "message"}')])
    provider = make()
    with pytest.raises(UpstreamError, match=f"^{re.escape(WHERE)}: malformed JSON"):
        await provider.chat(ask("bad"))
    with pytest.raises(UpstreamError, match="unexpected answer"):
        await provider.chat(ask("x"))


async def test_untranslatable_request_is_a_provider_error(up: ScriptedUpstream, make: Make) -> None:
    provider = make()
    request = ChatRequest(
        model=MODEL,
        messages=[
            {"role": "assistant", "tool_calls": [{"id": "t", "function": {"arguments": "{"}}]}
        ],
    )
    with pytest.raises(ProviderError, match="cannot translate the request") as raised:
        await provider.chat(request)
    assert raised.value.status == 400
    assert raised.value.provider == "claude"
    assert up.requests == []  # refused before anything was sent


async def test_concurrent_streams(up: ScriptedUpstream, make: Make) -> None:
    up.set_rules([Rule(reply="a b c")])
    provider = make()
    results = await asyncio.gather(*(collect(provider.stream(ask(f"s{i}"))) for i in range(20)))
    assert {"".join(c.delta for c in chunks) for chunks in results} == {"a b c"}


async def test_finished_streams_return_their_connection_to_the_pool(
    up: ScriptedUpstream, make: Make
) -> None:
    up.set_rules([Rule(reply="a b c")])
    provider = make()
    for _ in range(3):
        chunks = await collect(provider.stream(ask("x")))
        assert chunks[-1].finish_reason == "stop"
    assert len({r.client for r in up.requests}) == 1  # one connection, reused
