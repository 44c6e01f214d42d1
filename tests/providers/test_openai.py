"""The OpenAI-compatible provider against the scripted upstream on a real socket.

Client-logic cases (malformed JSON, missing usage, odd headers, hand-written streams) are
scripted as verbatim bodies (`Rule(body=...)`), still over a real socket.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from lockgate.config import PriceOverride, ProviderConfig, Settings, Timeouts
from lockgate.errors import (
    AuthError,
    ConfigError,
    ContextWindowExceeded,
    ProviderError,
    RateLimited,
    Timeout,
    UpstreamError,
)
from lockgate.providers._openai import OpenAIProvider, create, rate_limit_wait
from lockgate.providers._retry import RetryPolicy, stream_with_retries, with_retries
from lockgate.providers._types import ChatRequest, Provider, Usage
from lockgate.providers._wire import HTTPAnswer
from lockgate.testing import Rule, ScriptedUpstream
from tests.helpers import FakeSleep, collect

MODEL = "gpt-test"
WHERE = f"provider 'scripted' (openai), model '{MODEL}'"
WEATHER_CALL = {"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}

Make = Callable[..., OpenAIProvider]


def ask(text: str, **params: Any) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=[{"role": "user", "content": text}], **params)


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "SCRIPTED_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def make(up: ScriptedUpstream) -> AsyncIterator[Make]:
    made: list[OpenAIProvider] = []

    def make(
        *, settings: Settings | None = None, base_url: str | None = "", **kwargs: Any
    ) -> OpenAIProvider:
        url = up.url + "/v1" if base_url == "" else base_url
        provider = OpenAIProvider(
            "scripted", ProviderConfig(base_url=url, **kwargs), settings or Settings()
        )
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


# -- whole and streamed chat --------------------------------------------------------------


async def test_chat_returns_content_usage_and_finish_reason(
    up: ScriptedUpstream, make: Make
) -> None:
    up.set_rules([Rule(match="refund", reply="billing", usage=(12, 3)), Rule(reply="other")])
    provider = make()
    request = ask("I want a refund", temperature=0.2, max_tokens=50, stop=["\n"], seed=7)
    response = await provider.chat(request)
    assert response.content == "billing"
    assert response.finish_reason == "stop"
    assert response.usage == Usage(input_tokens=12, output_tokens=3)
    assert response.model == MODEL
    assert response.provider == "scripted"
    assert response.id.startswith("chatcmpl-")
    sent = up.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "I want a refund"}],
        "temperature": 0.2,
        "max_tokens": 50,
        "stop": ["\n"],
        "seed": 7,
    }
    assert "authorization" not in sent.headers  # no key configured, no header
    other = await provider.chat(ask("something else"))
    assert other.content == "other"


async def test_extra_params_are_passed_through(up: ScriptedUpstream, make: Make) -> None:
    await make().chat(ask("hi", extra={"logprobs": True}, user="u-1"))
    body = up.requests[-1].body
    assert body is not None
    assert (body["logprobs"], body["user"]) == (True, "u-1")


async def test_stream_yields_deltas_then_finish_and_usage(up: ScriptedUpstream, make: Make) -> None:
    up.set_rules([Rule(reply="one two three", usage=(5, 3))])
    chunks = await collect(make().stream(ask("count")))
    assert [c.delta for c in chunks] == ["one ", "two ", "three", ""]
    assert [c.finish_reason for c in chunks] == [None, None, None, "stop"]
    assert chunks[-1].usage == Usage(input_tokens=5, output_tokens=3)
    assert all(c.usage is None for c in chunks[:-1])
    assert {c.model for c in chunks} == {MODEL}
    body = up.requests[-1].body
    assert body is not None
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_length_finish_reason(up: ScriptedUpstream, make: Make) -> None:
    up.set_rules([Rule(reply="cut short", finish_reason="length")])
    provider = make()
    assert (await provider.chat(ask("x"))).finish_reason == "length"
    chunks = await collect(provider.stream(ask("x")))
    assert chunks[-1].finish_reason == "length"


async def test_tool_calls_whole(up: ScriptedUpstream, make: Make) -> None:
    up.set_rules([Rule(match="weather", tool_calls=[WEATHER_CALL])])
    response = await make().chat(ask("weather in Paris?", tools=[WEATHER_TOOL], tool_choice="auto"))
    assert response.finish_reason == "tool_calls"
    assert response.content is None
    assert response.tool_calls == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    body = up.requests[-1].body
    assert body is not None
    assert (body["tools"], body["tool_choice"]) == ([WEATHER_TOOL], "auto")


async def test_tool_call_deltas_are_passed_through(up: ScriptedUpstream, make: Make) -> None:
    up.set_rules([Rule(match="weather", tool_calls=[WEATHER_CALL])])
    chunks = await collect(make().stream(ask("weather in Paris?", tools=[WEATHER_TOOL])))
    calls = [call for c in chunks for call in c.tool_calls or ()]
    assert calls[0]["id"] == "call_1"
    assert calls[0]["index"] == 0
    assert calls[0]["function"]["name"] == "get_weather"
    arguments = "".join(call["function"].get("arguments", "") for call in calls)
    assert orjson.loads(arguments) == {"city": "Paris"}
    assert chunks[-1].finish_reason == "tool_calls"


async def test_embeddings(up: ScriptedUpstream, make: Make) -> None:
    response = await make().embed("embed-test", ["refund please", "refund please", "weather"])
    assert len(response.vectors) == 3
    assert all(len(v) == 32 for v in response.vectors)
    assert response.vectors[0] == response.vectors[1] != response.vectors[2]
    assert response.usage.input_tokens == 5
    assert not response.usage.estimated
    sent = up.requests[-1]
    assert sent.path == "/v1/embeddings"
    assert sent.body == {
        "model": "embed-test",
        "input": ["refund please", "refund please", "weather"],
    }


async def test_many_concurrent_calls_share_the_pool(up: ScriptedUpstream, make: Make) -> None:
    up.set_rules([Rule(reply="pong")])
    provider = make()
    replies = await asyncio.gather(*(provider.chat(ask(f"ping {i}")) for i in range(64)))
    assert {r.content for r in replies} == {"pong"}
    assert len(up.requests) == 64


# -- configuration ------------------------------------------------------------------------


async def test_api_key_from_the_configured_variable(
    up: ScriptedUpstream, make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCRIPTED_KEY", "sk-scripted")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    await make(api_key_env="SCRIPTED_KEY").chat(ask("hi"))
    assert up.requests[-1].headers["authorization"] == "Bearer sk-scripted"
    # A self-hosted server (its own base_url, no api_key_env) never gets the OpenAI key.
    await make().chat(ask("hi"))
    assert "authorization" not in up.requests[-1].headers
    # OPENAI_BASE_URL redirects the default openai entry, which keeps its default key.
    monkeypatch.setenv("OPENAI_BASE_URL", up.url + "/v1")
    await make(base_url=None).chat(ask("hi"))
    assert up.requests[-1].headers["authorization"] == "Bearer sk-openai"


async def test_base_url_falls_back_to_openai_base_url(
    up: ScriptedUpstream, make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", up.url + "/v1/")
    provider = make(base_url=None)
    assert provider.base_url == up.url + "/v1"
    assert (await provider.chat(ask("hi"))).content == "ok"
    assert up.requests[-1].path == "/v1/chat/completions"


def test_default_base_url_and_factory() -> None:
    provider = create("openai", ProviderConfig(), Settings())
    assert isinstance(provider, Provider)
    assert provider.base_url == "https://api.openai.com/v1"
    assert provider.name == "openai"


async def test_models_context_window_and_token_counts(make: Make) -> None:
    settings = Settings(prices={"scripted/my-model": PriceOverride(context_window=4096)})
    provider = make(settings=settings, options={"models": ["my-model", "gpt-4o-2024-08-06"]})
    infos = provider.models()
    assert [(i.provider, i.model) for i in infos] == [
        ("scripted", "my-model"),
        ("scripted", "gpt-4o-2024-08-06"),
    ]
    assert infos[0].context_window == 4096
    assert provider.context_window("my-model") == 4096
    from lockgate.accounting import count_message_tokens

    messages = [{"role": "user", "content": "Is my card blocked?"}]
    counted = provider.count_tokens("gpt-4o-2024-08-06", messages)
    assert counted == count_message_tokens("openai", "gpt-4o-2024-08-06", messages)
    assert counted.exact
    assert make().models() == []


# -- faults -------------------------------------------------------------------------------


async def test_429_with_retry_after_is_rate_limited(up: ScriptedUpstream, make: Make) -> None:
    up.set_rules([Rule(match="flaky", status=429, retry_after=1.5)])
    with pytest.raises(RateLimited) as raised:
        await make().chat(ask("flaky"))
    error = raised.value
    assert error.retry_after == 1.5
    assert error.status == 429
    assert error.provider == "scripted"
    assert str(error).startswith(f"{WHERE}: HTTP 429: ")
    assert "retry after 1.5s" in str(error)


async def test_with_retries_succeeds_after_two_429s(up: ScriptedUpstream, make: Make) -> None:
    up.set_rules([Rule(match="flaky", status=429, retry_after=1.5, times=2), Rule(reply="finally")])
    provider = make()
    sleep = FakeSleep()
    response = await with_retries(
        lambda: provider.chat(ask("flaky")), RetryPolicy(max_retries=3), sleep=sleep
    )
    assert response.content == "finally"
    assert len(up.requests) == 3
    assert len(sleep.delays) == 2
    assert all(d >= 1.5 for d in sleep.delays)


async def test_stream_with_retries_recovers_before_the_first_chunk(
    up: ScriptedUpstream, make: Make
) -> None:
    up.set_rules([Rule(status=503, times=1), Rule(reply="a b")])
    provider = make()
    sleep = FakeSleep()
    stream = stream_with_retries(lambda: provider.stream(ask("x")), RetryPolicy(), sleep=sleep)
    chunks = await collect(stream)
    assert "".join(c.delta for c in chunks) == "a b"
    assert len(sleep.delays) == 1
    assert len(up.requests) == 2


@pytest.mark.parametrize("status", [500, 502, 503, 408, 409])
async def test_server_errors_are_upstream_errors(
    up: ScriptedUpstream, make: Make, status: int
) -> None:
    up.set_rules([Rule(status=status, error_message="it broke")])
    provider = make()
    with pytest.raises(UpstreamError) as raised:
        await provider.chat(ask("boom"))
    assert raised.value.status == status
    assert str(raised.value) == f"{WHERE}: HTTP {status}: it broke"
    with pytest.raises(UpstreamError):
        await collect(provider.stream(ask("boom")))


async def test_delay_beyond_the_read_timeout_is_a_timeout(up: ScriptedUpstream, make: Make) -> None:
    up.set_rules([Rule(match="slow", delay=5.0)])
    provider = make(timeouts=Timeouts(connect=1.0, read=0.2, total=30.0))
    with pytest.raises(Timeout, match=r"read timeout: no data from .* for 0\.2s") as raised:
        await provider.chat(ask("slow"))
    assert str(raised.value).startswith(WHERE)
    with pytest.raises(Timeout):
        await collect(provider.stream(ask("slow")))


async def test_hang_hits_the_total_deadline(up: ScriptedUpstream, make: Make) -> None:
    up.set_rules([Rule(match="hang", hang=True)])
    provider = make(timeouts=Timeouts(connect=1.0, read=30.0, total=0.3))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Timeout, match=r"total deadline of 0\.3s"):
        await provider.chat(ask("hang"))
    assert loop.time() - started < 2.0
    with pytest.raises(Timeout, match="total deadline"):
        await collect(provider.stream(ask("hang")))


async def test_total_deadline_mid_stream_is_an_upstream_error(
    up: ScriptedUpstream, make: Make
) -> None:
    up.set_rules([Rule(reply="a b c d", chunk_interval=1.0)])
    provider = make(timeouts=Timeouts(connect=1.0, read=30.0, total=0.5))
    received: list[str] = []
    with pytest.raises(UpstreamError, match="stream ended early after 1 chunks") as raised:
        async for chunk in provider.stream(ask("drip")):
            received.append(chunk.delta)
    assert received == ["a "]
    assert isinstance(raised.value.__cause__, Timeout)


async def test_drop_mid_stream_after_chunks_were_delivered(
    up: ScriptedUpstream, make: Make
) -> None:
    up.set_rules([Rule(match="cut", reply="one two three four five", drop_after_chunks=3)])
    provider = make()
    received: list[str] = []
    with pytest.raises(UpstreamError, match="stream ended early after 3 chunks") as raised:
        async for chunk in provider.stream(ask("cut")):
            received.append(chunk.delta)
    assert received == ["one ", "two ", "three "]
    assert str(raised.value).startswith(WHERE)
    assert "\n" not in str(raised.value)


async def test_dropped_connection_without_response(up: ScriptedUpstream, make: Make) -> None:
    up.set_rules([Rule(match="cut", drop_after_chunks=0)])
    with pytest.raises(UpstreamError, match=f"^{re.escape(WHERE)}: failed talking to"):
        await make().chat(ask("cut"))


async def test_401_names_the_variable_to_set(
    up: ScriptedUpstream, make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    up.set_rules([Rule(status=401, error_message="Incorrect API key provided.")])
    with pytest.raises(AuthError) as raised:
        await make().chat(ask("hi"))
    assert raised.value.status == 401
    assert str(raised.value) == (
        f"{WHERE}: HTTP 401: Incorrect API key provided.; "
        "no API key was sent; set api_key_env for provider 'scripted' in lockgate.yaml to "
        "the variable holding the key"
    )
    monkeypatch.setenv("SCRIPTED_KEY", "sk-wrong")
    with pytest.raises(AuthError, match="the key in SCRIPTED_KEY was refused"):
        await make(api_key_env="SCRIPTED_KEY").chat(ask("hi"))


async def test_context_length_400_is_context_window_exceeded(
    up: ScriptedUpstream, make: Make
) -> None:
    up.set_rules(
        [
            Rule(
                match="long",
                status=400,
                error_code="context_length_exceeded",
                error_message="This model's maximum context length is 8192 tokens. "
                "However, your messages resulted in 9000 tokens.",
            ),
            Rule(
                match="vllm",
                status=400,
                error_message="This model's maximum context length "
                "is 4096 tokens. However, you requested 5000 tokens.",
            ),
        ]
    )
    provider = make()
    with pytest.raises(ContextWindowExceeded, match="maximum context length is 8192") as raised:
        await provider.chat(ask("long"))
    assert raised.value.status == 400
    with pytest.raises(ContextWindowExceeded):
        await collect(provider.stream(ask("vllm")))


async def test_other_4xx_is_a_plain_provider_error_and_not_retried(
    up: ScriptedUpstream, make: Make
) -> None:
    up.set_rules([Rule(status=400, error_message="Invalid value for 'temperature'.")])
    provider = make()
    sleep = FakeSleep()
    with pytest.raises(ProviderError) as raised:
        await with_retries(lambda: provider.chat(ask("x")), RetryPolicy(), sleep=sleep)
    assert type(raised.value) is ProviderError
    assert raised.value.status == 400
    assert str(raised.value) == f"{WHERE}: HTTP 400: Invalid value for 'temperature'."
    assert sleep.delays == []
    assert len(up.requests) == 1


async def test_unreachable_server_is_an_upstream_error(make: Make) -> None:
    provider = make(base_url="http://127.0.0.1:9/v1", timeouts=Timeouts(connect=1.0))
    with pytest.raises(UpstreamError, match=re.escape("failed talking to http://127.0.0.1:9/v1")):
        await provider.chat(ask("hi"))


# -- client logic scripted as verbatim bodies ---------------------------------------------

SSE = {"content-type": "text/event-stream"}


def sse(*events: str) -> str:
    return "".join(f"data: {e}\n\n" for e in events)


async def test_malformed_json_is_an_upstream_error(up: ScriptedUpstream, make: Make) -> None:
    up.set_rules(
        [Rule(match="whole", body="<html>gateway</html>"), Rule(body=sse("{not json"), headers=SSE)]
    )
    provider = make()
    with pytest.raises(UpstreamError, match=f"^{re.escape(WHERE)}: malformed JSON from upstream"):
        await provider.chat(ask("whole"))
    with pytest.raises(UpstreamError, match="malformed JSON"):
        await collect(provider.stream(ask("hi")))


async def test_unexpected_shape_is_an_upstream_error(up: ScriptedUpstream, make: Make) -> None:
    up.set_rules([Rule(body='{"choices": []}')])
    with pytest.raises(UpstreamError, match="unexpected answer"):
        await make().chat(ask("hi"))


async def test_missing_usage_is_estimated(up: ScriptedUpstream, make: Make) -> None:
    answer = {"choices": [{"message": {"role": "assistant", "content": "hello there"}}]}
    up.set_rules([Rule(body=orjson.dumps(answer))])
    response = await make().chat(ask("hi"))
    assert response.content == "hello there"
    assert response.usage.estimated
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0


async def test_stream_without_usage_leaves_usage_none(up: ScriptedUpstream, make: Make) -> None:
    delta = '{"choices":[{"delta":{"content":"hi"},"finish_reason":null}]}'
    final = '{"choices":[{"delta":{},"finish_reason":"stop"}]}'
    up.set_rules([Rule(body=sse(delta, final, "[DONE]"), headers=SSE)])
    chunks = await collect(make().stream(ask("x")))
    assert [(c.delta, c.finish_reason, c.usage) for c in chunks] == [
        ("hi", None, None),
        ("", "stop", None),
    ]


async def test_stream_usage_on_the_finish_chunk(up: ScriptedUpstream, make: Make) -> None:
    final = (
        '{"choices":[{"delta":{"content":"!"},"finish_reason":"length"}],'
        '"usage":{"prompt_tokens":4,"completion_tokens":2,'
        '"prompt_tokens_details":{"cached_tokens":3}}}'
    )
    up.set_rules([Rule(body=sse(final, "[DONE]"), headers=SSE)])
    chunks = await collect(make().stream(ask("x")))
    assert [c.delta for c in chunks] == ["!", ""]
    assert chunks[-1].finish_reason == "length"
    assert chunks[-1].usage == Usage(input_tokens=4, output_tokens=2, cached_input_tokens=3)


async def test_stream_ending_without_done_is_an_upstream_error(
    up: ScriptedUpstream, make: Make
) -> None:
    delta = '{"choices":[{"delta":{"content":"hi"},"finish_reason":null}]}'
    up.set_rules([Rule(body=sse(delta), headers=SSE)])
    received: list[str] = []
    with pytest.raises(UpstreamError, match=r"stream ended early after 1 chunks$"):
        async for chunk in make().stream(ask("x")):
            received.append(chunk.delta)
    assert received == ["hi"]


async def test_error_event_in_stream(up: ScriptedUpstream, make: Make) -> None:
    error = '{"error":{"message":"model crashed","type":"server_error"}}'
    up.set_rules([Rule(body=sse(error), headers=SSE)])
    with pytest.raises(UpstreamError, match="error event in stream: model crashed"):
        await collect(make().stream(ask("x")))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250", "retry-after": "1"}, 0.25),
        ({"retry-after": "2"}, 2.0),
        ({"x-ratelimit-reset-requests": "1.5s", "x-ratelimit-reset-tokens": "20ms"}, 1.5),
        (
            {
                "x-ratelimit-reset-requests": "6m0s",
                "x-ratelimit-remaining-requests": "10",
                "x-ratelimit-reset-tokens": "20ms",
                "x-ratelimit-remaining-tokens": "0",
            },
            0.02,
        ),
        ({"x-ratelimit-reset-tokens": "20ms"}, 0.02),
        ({}, None),
    ],
)
def test_rate_limit_wait_from_headers(headers: dict[str, str], expected: float | None) -> None:
    wait = rate_limit_wait(HTTPAnswer.of(429, **headers).headers)
    if expected is None:
        assert wait is None
    else:
        assert wait == pytest.approx(expected)


async def test_429_with_reset_header_only(up: ScriptedUpstream, make: Make) -> None:
    up.set_rules(
        [
            Rule(
                status=429,
                body='{"error": {"message": "slow down"}}',
                headers={"X-RateLimit-Reset-Requests": "20ms"},
            )
        ]
    )
    with pytest.raises(RateLimited, match="slow down") as raised:
        await make().chat(ask("x"))
    assert raised.value.retry_after == pytest.approx(0.02)


async def test_finished_streams_return_their_connection_to_the_pool(
    up: ScriptedUpstream, make: Make
) -> None:
    up.set_rules([Rule(reply="a b c")])
    provider = make()
    for _ in range(3):
        chunks = await collect(provider.stream(ask("x")))
        assert chunks[-1].finish_reason == "stop"
    assert len({r.client for r in up.requests}) == 1  # one connection, reused


async def test_body_left_open_after_done_still_completes(up: ScriptedUpstream, make: Make) -> None:
    body = sse('{"choices":[{"delta":{"content":"hi"},"finish_reason":"stop"}]}', "[DONE]")
    up.set_rules([Rule(body=body, headers=SSE, hang=True)])  # never ends the body
    loop = asyncio.get_running_loop()
    started = loop.time()
    chunks = await collect(make().stream(ask("x")))
    assert [(c.delta, c.finish_reason) for c in chunks] == [("hi", None), ("", "stop")]
    assert loop.time() - started < 5.0


# -- configuration and transport checks ----------------------------------------------------


async def test_redirects_are_refused_not_followed(up: ScriptedUpstream, make: Make) -> None:
    elsewhere = up.url + "/v1/models"
    up.set_rules([Rule(status=307, body="", headers={"location": elsewhere})])
    provider = make()
    with pytest.raises(
        ProviderError, match=r"HTTP 307 redirect to .*/v1/models.*base_url"
    ) as raised:
        await provider.chat(ask("hi"))
    assert raised.value.status == 307
    with pytest.raises(ProviderError, match="does not follow redirects"):
        await collect(provider.stream(ask("hi")))
    assert [r.path for r in up.requests] == ["/v1/chat/completions"] * 2  # never /v1/models


async def test_a_key_read_from_a_secret_file_loses_its_newline(
    up: ScriptedUpstream, make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCRIPTED_KEY", "sk-scripted\n")
    await make(api_key_env="SCRIPTED_KEY").chat(ask("hi"))
    assert up.requests[0].headers["authorization"] == "Bearer sk-scripted"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_url": "localhost:8000/v1"}, "base_url 'localhost:8000/v1' is not an http://"),
        ({"options": {"proxy": "socks5://127.0.0.1:1080"}}, "options.proxy 'socks5://"),
        ({"options": {"ca_bundle": "/nonexistent/ca.pem"}}, "ca_bundle '/nonexistent/ca.pem'"),
    ],
)
def test_bad_settings_fail_when_the_provider_is_made(kwargs: dict[str, Any], message: str) -> None:
    config = ProviderConfig(**{"base_url": "http://127.0.0.1:9/v1", **kwargs})
    with pytest.raises(ConfigError, match=re.escape(message)):
        OpenAIProvider("scripted", config, Settings())


def test_a_key_with_control_characters_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCRIPTED_KEY", "sk-one\nsk-two")
    config = ProviderConfig(base_url="http://127.0.0.1:9/v1", api_key_env="SCRIPTED_KEY")
    with pytest.raises(ConfigError, match="the API key in SCRIPTED_KEY contains control"):
        OpenAIProvider("scripted", config, Settings())
