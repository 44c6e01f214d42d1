"""Translation between the OpenAI chat shape and Anthropic's Messages API (pure, no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from lockgate.errors import UpstreamError
from lockgate.providers._anthropic_translate import (
    RESPONSE_TOOL,
    StreamTranslator,
    response_from,
    to_messages_body,
)
from lockgate.providers._types import ChatRequest, Usage

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
SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "triage",
        "schema": {"type": "object", "properties": {"category": {"type": "string"}}},
    },
}


def ask(text: str, **params: Any) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=[{"role": "user", "content": text}], **params)


# -- request translation (pure) -----------------------------------------------------------


def test_conversation_is_translated() -> None:
    request = ChatRequest(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Weather?"},
            {"role": "user", "content": [{"type": "text", "text": "In Paris."}]},
            {"role": "system", "content": "Use Celsius."},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18 degrees"},
            {"role": "user", "content": "Thanks, and tomorrow?"},
        ],
        temperature=0.3,
        top_p=0.9,
        stop=["END"],
        seed=1,
        user="tenant-7",
        tools=[WEATHER_TOOL],
        tool_choice="required",
    )
    assert to_messages_body(request) == {
        "model": MODEL,
        "system": "You are terse.\n\nUse Celsius.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather?"},
                    {"type": "text", "text": "In Paris."},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 degrees"},
                    {"type": "text", "text": "Thanks, and tomorrow?"},
                ],
            },
        ],
        "max_tokens": 1024,
        "temperature": 0.3,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "tenant-7"},
        "tools": [
            {
                "name": "get_weather",
                "description": "Weather in a city",
                "input_schema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
            }
        ],
        "tool_choice": {"type": "any"},
    }


def test_images_max_tokens_and_stream_flag() -> None:
    request = ChatRequest(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/cat.jpg"}},
                ],
            }
        ],
        max_tokens=10,
        extra={"top_k": 5},
    )
    body = to_messages_body(request, stream=True)
    assert body["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.jpg"}},
    ]
    assert (body["max_tokens"], body["stream"], body["top_k"]) == (10, True, 5)
    assert "system" not in body
    assert to_messages_body(ask("hi"), default_max_tokens=77)["max_tokens"] == 77


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "f"}}, {"type": "tool", "name": "f"}),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, str]) -> None:
    body = to_messages_body(ask("x", tools=[WEATHER_TOOL], tool_choice=choice))
    assert body["tool_choice"] == expected


def test_json_schema_is_enforced_with_a_forced_tool() -> None:
    body = to_messages_body(ask("classify", response_format=SCHEMA_FORMAT))
    assert body["tools"] == [
        {
            "name": RESPONSE_TOOL,
            "description": "Give the final answer as this JSON object.",
            "input_schema": SCHEMA_FORMAT["json_schema"]["schema"],  # type: ignore[index]
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": RESPONSE_TOOL}
    assert "system" not in body


def test_json_object_and_schema_with_tools_fall_back_to_an_instruction() -> None:
    body = to_messages_body(
        ChatRequest(
            model=MODEL,
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "x"}],
            response_format={"type": "json_object"},
        )
    )
    assert body["system"].startswith("Be brief.\n\nAnswer with one JSON value only")
    assert "tools" not in body
    with_tools = to_messages_body(ask("x", response_format=SCHEMA_FORMAT, tools=[WEATHER_TOOL]))
    assert '"category"' in with_tools["system"]
    assert [t["name"] for t in with_tools["tools"]] == ["get_weather"]


def test_broken_tool_arguments_are_refused() -> None:
    request = ChatRequest(
        model=MODEL,
        messages=[
            {
                "role": "assistant",
                "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "{oops"}}],
            }
        ],
    )
    with pytest.raises(ValueError, match="not JSON"):
        to_messages_body(request)


# -- response translation (pure) ----------------------------------------------------------


def test_response_with_text_tool_use_and_cache_usage() -> None:
    data = {
        "id": "msg_1",
        "model": "claude-test-20250101",
        "content": [
            {"type": "text", "text": "Let me check. "},
            {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Oslo"}},
        ],
        "stop_reason": "tool_use",
        "usage": {
            "input_tokens": 10,
            "output_tokens": 20,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 5,
        },
    }
    response = response_from(data, model=MODEL, provider="claude")
    assert response.id == "msg_1"
    assert response.model == "claude-test-20250101"
    assert response.content == "Let me check. "
    assert response.finish_reason == "tool_calls"
    assert response.tool_calls == [
        {
            "id": "toolu_9",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
        }
    ]
    assert response.usage == Usage(input_tokens=115, output_tokens=20, cached_input_tokens=100)


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, "stop"),
        ("something_new", "stop"),
    ],
)
def test_stop_reasons(stop_reason: str | None, finish: str) -> None:
    data = {"content": [{"type": "text", "text": "x"}], "stop_reason": stop_reason}
    assert response_from(data, model=MODEL, provider="p").finish_reason == finish


def test_stream_translator_handles_every_event() -> None:
    translator = StreamTranslator(where=WHERE, provider="claude")
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "model": "claude-x",
                "usage": {"input_tokens": 7, "output_tokens": 1, "cache_read_input_tokens": 3},
            },
        },
        {"type": "ping"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"a":'},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": "1}"},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 9},
        },
        {"type": "message_stop"},
    ]
    chunks = [c for c in (translator.feed(e) for e in events) if c is not None]
    assert translator.done
    assert [c.delta for c in chunks] == ["Hi", "", "", "", ""]
    assert chunks[1].tool_calls == [
        {
            "index": 0,
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "f", "arguments": ""},
        }
    ]
    assert [c.tool_calls for c in chunks[2:4]] == [
        [{"index": 0, "function": {"arguments": '{"a":'}}],
        [{"index": 0, "function": {"arguments": "1}"}}],
    ]
    assert chunks[-1].finish_reason == "tool_calls"
    assert chunks[-1].usage == Usage(input_tokens=10, output_tokens=9, cached_input_tokens=3)
    assert chunks[-1].model == "claude-x"


def test_stream_translator_error_event() -> None:
    translator = StreamTranslator(where=WHERE, provider="claude")
    event = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(UpstreamError, match="error event in stream: overloaded_error: Overloaded"):
        translator.feed(event)
