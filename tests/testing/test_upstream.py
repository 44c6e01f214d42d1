"""The scripted upstream, exercised over real sockets with httpx."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lockgate.errors import ConfigError
from lockgate.testing import RecordedRequest, Rule, ScriptedUpstream, load_rules


def chat_body(text: str | list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": text}], **extra}


def anthropic_body(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-test",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def sse_data(lines: Iterator[str]) -> list[str]:
    """The payloads of ``data:`` lines."""
    return [line[len("data: ") :] for line in lines if line.startswith("data: ")]


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) pairs of an Anthropic-style stream."""
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as c:
        yield c


def post_chat(
    client: httpx.Client, up: ScriptedUpstream, text: str | list[dict[str, Any]], **extra: Any
) -> httpx.Response:
    return client.post(f"{up.url}/v1/chat/completions", json=chat_body(text, **extra))


# -- OpenAI chat ---------------------------------------------------------------------------


def test_chat_completion_answers_with_the_matching_rule(client: httpx.Client) -> None:
    rules = [Rule(match=r"refund", reply="billing"), Rule(match=None, reply="other")]
    with ScriptedUpstream(rules) as up:
        assert up.url.startswith("http://127.0.0.1:")
        billing = post_chat(client, up, "I want a refund now")
        other = post_chat(client, up, "hello")

    assert billing.status_code == 200
    data = billing.json()
    assert data["object"] == "chat.completion"
    assert data["id"].startswith("chatcmpl-")
    assert data["model"] == "gpt-test"
    choice = data["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "billing", "refusal": None}
    assert choice["finish_reason"] == "stop"
    assert data["usage"] == {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    assert other.json()["choices"][0]["message"]["content"] == "other"


def test_matches_only_the_last_user_message_and_joins_content_parts(
    client: httpx.Client,
) -> None:
    with ScriptedUpstream([Rule(match=r"refund", reply="billing")], default_reply="dflt") as up:
        history = {
            "model": "m",
            "messages": [
                {"role": "system", "content": "refund policy applies"},
                {"role": "user", "content": "refund?"},
                {"role": "assistant", "content": "sure"},
                {"role": "user", "content": "thanks"},
            ],
        }
        not_last = client.post(f"{up.url}/v1/chat/completions", json=history)
        parts = [{"type": "text", "text": "first"}, {"type": "text", "text": "a refund"}]
        in_parts = post_chat(client, up, parts)

    assert not_last.json()["choices"][0]["message"]["content"] == "dflt"
    assert in_parts.json()["choices"][0]["message"]["content"] == "billing"


def test_model_name_overrides_the_echoed_model(client: httpx.Client) -> None:
    with ScriptedUpstream(model_name="pinned-2024-07-18") as up:
        response = post_chat(client, up, "hi")
        models = client.get(f"{up.url}/v1/models").json()
    assert response.json()["model"] == "pinned-2024-07-18"
    assert [m["id"] for m in models["data"]] == ["pinned-2024-07-18"]


def test_streaming_chat_sends_role_content_finish_usage_and_done(client: httpx.Client) -> None:
    reply = "Your refund is on its way."
    with ScriptedUpstream([Rule(match="refund", reply=reply, usage=(11, 7))]) as up:
        body = chat_body("refund", stream=True, stream_options={"include_usage": True})
        with client.stream("POST", f"{up.url}/v1/chat/completions", json=body) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            payloads = sse_data(response.iter_lines())

    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content_chunks = [c for c in chunks[1:] if c["choices"] and c["choices"][0]["delta"]]
    assert len(content_chunks) == len(reply.split())
    assert "".join(c["choices"][0]["delta"]["content"] for c in content_chunks) == reply
    finish = chunks[-2]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def test_streaming_without_include_usage_has_no_usage_chunk(client: httpx.Client) -> None:
    with ScriptedUpstream([Rule(reply="abcdefghij", chunks=3)]) as up:
        body = chat_body("x", stream=True)
        with client.stream("POST", f"{up.url}/v1/chat/completions", json=body) as response:
            payloads = sse_data(response.iter_lines())
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all("usage" not in c for c in chunks)
    deltas = [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]]
    assert deltas == ["abcd", "efg", "hij"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_chunk_interval_spaces_streamed_chunks(client: httpx.Client) -> None:
    with ScriptedUpstream([Rule(reply="a b c d", chunk_interval=0.1)]) as up:
        body = chat_body("x", stream=True)
        started = time.perf_counter()
        with client.stream("POST", f"{up.url}/v1/chat/completions", json=body) as response:
            response.read()
        elapsed = time.perf_counter() - started
    assert elapsed >= 0.3  # three gaps between four chunks


def test_times_exhaustion_falls_through_to_later_rules(client: httpx.Client) -> None:
    rules = [
        Rule(match=r"flaky", status=429, retry_after=1.5, times=2),
        Rule(match=r"flaky", reply="recovered"),
    ]
    with ScriptedUpstream(rules) as up:
        statuses = [post_chat(client, up, "flaky call").status_code for _ in range(3)]
        up.set_rules(rules)  # counters start again
        after_reset = [post_chat(client, up, "flaky call") for _ in range(3)]

    assert statuses == [429, 429, 200]
    assert [r.status_code for r in after_reset] == [429, 429, 200]
    assert after_reset[2].json()["choices"][0]["message"]["content"] == "recovered"


def test_rate_limit_has_retry_after_header_and_openai_error_body(client: httpx.Client) -> None:
    with ScriptedUpstream([Rule(status=429, retry_after=1.5)]) as up:
        response = post_chat(client, up, "anything")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1.5"
    error = response.json()["error"]
    assert error["type"] == "rate_limit_error"
    assert error["code"] == "rate_limit_exceeded"
    assert error["param"] is None
    assert isinstance(error["message"], str)


def test_server_error_body_shape_and_custom_error_fields(client: httpx.Client) -> None:
    rules = [
        Rule(match="boom", status=500),
        Rule(
            match="long",
            status=400,
            error_type="invalid_request_error",
            error_message="too long",
            error_code="context_length_exceeded",
        ),
    ]
    with ScriptedUpstream(rules) as up:
        boom = post_chat(client, up, "boom")
        long = post_chat(client, up, "long")
    assert boom.status_code == 500
    assert set(boom.json()["error"]) == {"message", "type", "param", "code"}
    assert boom.json()["error"]["type"] == "server_error"
    assert "retry-after" not in boom.headers
    assert long.status_code == 400
    assert long.json() == {
        "error": {
            "message": "too long",
            "type": "invalid_request_error",
            "param": None,
            "code": "context_length_exceeded",
        }
    }


def test_dict_reply_is_json_content_with_response_format(client: httpx.Client) -> None:
    with ScriptedUpstream([Rule(match="json please", reply={"category": "billing"})]) as up:
        response = post_chat(client, up, "json please", response_format={"type": "json_object"})
    content = response.json()["choices"][0]["message"]["content"]
    assert json.loads(content) == {"category": "billing"}


def test_tool_calls_replace_content(client: httpx.Client) -> None:
    call = {"id": "call_abc", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
    with ScriptedUpstream([Rule(tool_calls=[call])]) as up:
        whole = post_chat(client, up, "weather?")
        body = chat_body("weather?", stream=True)
        with client.stream("POST", f"{up.url}/v1/chat/completions", json=body) as response:
            payloads = sse_data(response.iter_lines())

    choice = whole.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (returned,) = choice["message"]["tool_calls"]
    assert returned["id"] == "call_abc"
    assert returned["type"] == "function"
    assert returned["function"]["name"] == "get_weather"
    assert json.loads(returned["function"]["arguments"]) == {"city": "Oslo"}

    chunks = [json.loads(p) for p in payloads[:-1]]
    streamed = [
        c["choices"][0]["delta"]["tool_calls"]
        for c in chunks
        if "tool_calls" in c["choices"][0]["delta"]
    ]
    assert streamed == [[{"index": 0, **returned}]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


# -- pacing, hangs and drops ---------------------------------------------------------------


def test_latency_is_applied_to_every_request(client: httpx.Client) -> None:
    with ScriptedUpstream(latency=0.2) as up:
        started = time.perf_counter()
        post_chat(client, up, "x")
        client.get(f"{up.url}/v1/models")
        elapsed = time.perf_counter() - started
    assert 0.4 <= elapsed < 1.5


def test_latency_range_draws_within_bounds(client: httpx.Client) -> None:
    with ScriptedUpstream(latency=(0.05, 0.1)) as up:
        for _ in range(3):
            started = time.perf_counter()
            post_chat(client, up, "x")
            assert 0.05 <= time.perf_counter() - started < 0.6


def test_delay_longer_than_client_timeout_raises_read_timeout() -> None:
    with ScriptedUpstream([Rule(match="slow", delay=5.0)]) as up:
        with httpx.Client(timeout=0.2) as short, pytest.raises(httpx.ReadTimeout):
            post_chat(short, up, "slow please")
        started = time.perf_counter()
    assert time.perf_counter() - started < 1.0  # the pending delay does not hold up stop


async def test_hang_is_released_when_the_server_stops() -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        async with ScriptedUpstream([Rule(match="hang", hang=True)]) as up:
            task = asyncio.create_task(
                client.post(f"{up.url}/v1/chat/completions", json=chat_body("hang"))
            )
            while not up.requests:
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.2)
            assert not task.done()
            stopping = time.perf_counter()
        with pytest.raises(httpx.RemoteProtocolError):
            await asyncio.wait_for(task, 2)
        assert time.perf_counter() - stopping < 1.0
    assert not [t for t in threading.enumerate() if t.name.startswith("scripted-upstream")]


def test_drop_mid_stream_breaks_the_stream_after_n_chunks(client: httpx.Client) -> None:
    rule = Rule(match="cut", reply="one two three four five six", drop_after_chunks=3)
    with ScriptedUpstream([rule]) as up:
        lines: list[str] = []
        body = chat_body("cut", stream=True)
        with (
            pytest.raises(httpx.RemoteProtocolError),
            client.stream("POST", f"{up.url}/v1/chat/completions", json=body) as response,
        ):
            for line in response.iter_lines():  # keep what arrives before the error
                lines.append(line)
        # the server survives a drop
        assert post_chat(client, up, "fine").status_code == 200

    payloads = sse_data(iter(lines))
    assert "[DONE]" not in payloads
    chunks = [json.loads(p) for p in payloads]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = [c["choices"][0]["delta"]["content"] for c in chunks[1:]]
    assert content == ["one ", "two ", "three "]


def test_drop_without_streaming_closes_without_a_response(client: httpx.Client) -> None:
    with ScriptedUpstream([Rule(match="cut", drop_after_chunks=0)]) as up:
        with pytest.raises(httpx.RemoteProtocolError):
            post_chat(client, up, "cut")
        assert len(up.requests) == 1


async def test_requests_are_served_concurrently() -> None:
    limits = httpx.Limits(max_connections=100)
    async with (
        ScriptedUpstream(latency=0.2) as up,
        httpx.AsyncClient(timeout=10, limits=limits) as client,
    ):
        started = time.perf_counter()
        responses = await asyncio.gather(
            *(
                client.post(f"{up.url}/v1/chat/completions", json=chat_body(f"q{i}"))
                for i in range(50)
            )
        )
        elapsed = time.perf_counter() - started
    assert all(r.status_code == 200 for r in responses)
    assert elapsed < 2.0  # serialised, it would take 50 x 0.2 s = 10 s
    assert len(up.requests) == 50


# -- recording -----------------------------------------------------------------------------


def test_requests_are_recorded_in_order_and_reset_clears_them(client: httpx.Client) -> None:
    with ScriptedUpstream() as up:
        post_chat(client, up, "first", temperature=0.2)
        client.get(f"{up.url}/v1/models", headers={"X-Trace-Id": "abc"})
        recorded = up.requests
        up.reset()
        after_reset = up.requests

    assert [(r.method, r.path) for r in recorded] == [
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
    ]
    assert isinstance(recorded[0], RecordedRequest)
    assert recorded[0].body == chat_body("first", temperature=0.2)
    assert recorded[0].headers["content-type"] == "application/json"
    assert recorded[1].headers["x-trace-id"] == "abc"
    assert recorded[1].body is None
    assert after_reset == []


def test_url_is_unavailable_outside_the_with_block() -> None:
    up = ScriptedUpstream()
    with pytest.raises(RuntimeError):
        _ = up.url
    with up:
        port = up.port
    with pytest.raises(RuntimeError):
        _ = up.url
    assert port > 0


# -- embeddings and models -----------------------------------------------------------------


def test_embeddings_are_deterministic_normalised_vectors(client: httpx.Client) -> None:
    texts = ["refund my order", "please refund my order", "the weather in Oslo"]
    with ScriptedUpstream() as up:
        first = client.post(f"{up.url}/v1/embeddings", json={"model": "emb", "input": texts})
        again = client.post(f"{up.url}/v1/embeddings", json={"model": "emb", "input": texts[0]})
        sized = client.post(
            f"{up.url}/v1/embeddings",
            json={"model": "emb", "input": texts[0], "dimensions": 8, "encoding_format": "base64"},
        )

    data = first.json()
    assert data["object"] == "list"
    assert data["model"] == "emb"
    assert data["usage"] == {"prompt_tokens": 11, "total_tokens": 11}
    vectors = [item["embedding"] for item in data["data"]]
    assert [item["index"] for item in data["data"]] == [0, 1, 2]
    assert all(len(v) == 32 for v in vectors)
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0) for v in vectors)
    assert again.json()["data"][0]["embedding"] == vectors[0]

    def cosine(a: list[float], b: list[float]) -> float:
        return math.fsum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    packed = base64.b64decode(sized.json()["data"][0]["embedding"])
    assert len(struct.unpack("<8f", packed)) == 8


def test_rules_also_script_embedding_failures(client: httpx.Client) -> None:
    with ScriptedUpstream([Rule(match="poison", status=503, times=1)]) as up:
        failed = client.post(f"{up.url}/v1/embeddings", json={"model": "e", "input": ["poison"]})
        ok = client.post(f"{up.url}/v1/embeddings", json={"model": "e", "input": ["poison"]})
    assert failed.status_code == 503
    assert failed.json()["error"]["type"] == "server_error"
    assert ok.status_code == 200


def test_models_lists_in_openai_shape(client: httpx.Client) -> None:
    with ScriptedUpstream(models=["a-1", "b-2"]) as up:
        response = client.get(f"{up.url}/v1/models")
        unknown = client.get(f"{up.url}/v2/nothing")
    assert response.json() == {
        "object": "list",
        "data": [
            {"id": "a-1", "object": "model", "created": 0, "owned_by": "lockgate-testing"},
            {"id": "b-2", "object": "model", "created": 0, "owned_by": "lockgate-testing"},
        ],
    }
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "not_found_error"


# -- Anthropic -----------------------------------------------------------------------------


def test_anthropic_message(client: httpx.Client) -> None:
    rules = [Rule(match="refund", reply="billing"), Rule(match="long", finish_reason="length")]
    with ScriptedUpstream(rules) as up:
        body = anthropic_body("a refund please", system=[{"type": "text", "text": "be brief"}])
        response = client.post(f"{up.url}/v1/messages", json=body)
        truncated = client.post(f"{up.url}/v1/messages", json=anthropic_body("long"))

    data = response.json()
    assert data["id"].startswith("msg_")
    assert data["type"] == "message"
    assert data["role"] == "assistant"
    assert data["model"] == "claude-test"
    assert data["content"] == [{"type": "text", "text": "billing"}]
    assert data["stop_reason"] == "end_turn"
    assert data["stop_sequence"] is None
    assert data["usage"] == {"input_tokens": 5, "output_tokens": 1}
    assert truncated.json()["stop_reason"] == "max_tokens"


def test_anthropic_tool_use(client: httpx.Client) -> None:
    call = {"id": "toolu_1", "function": {"name": "lookup", "arguments": '{"order": 42}'}}
    with ScriptedUpstream([Rule(tool_calls=[call])]) as up:
        response = client.post(f"{up.url}/v1/messages", json=anthropic_body("find order"))
    data = response.json()
    assert data["stop_reason"] == "tool_use"
    assert data["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"order": 42}}
    ]


def test_anthropic_streaming_event_sequence(client: httpx.Client) -> None:
    with ScriptedUpstream([Rule(reply="Hello there friend", usage=(9, 3))]) as up:
        body = anthropic_body("hi", stream=True)
        with client.stream("POST", f"{up.url}/v1/messages", json=body) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_events(response.read().decode())

    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    assert events[0][1]["message"]["usage"]["input_tokens"] == 9
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert all(d["type"] == "text_delta" for d in deltas)
    assert "".join(d["text"] for d in deltas) == "Hello there friend"
    assert events[6][1]["delta"]["stop_reason"] == "end_turn"
    assert events[6][1]["usage"] == {"output_tokens": 3}


def test_anthropic_drop_mid_stream(client: httpx.Client) -> None:
    with ScriptedUpstream([Rule(reply="a b c d", drop_after_chunks=2)]) as up:
        lines: list[str] = []
        body = anthropic_body("hi", stream=True)
        with (
            pytest.raises(httpx.RemoteProtocolError),
            client.stream("POST", f"{up.url}/v1/messages", json=body) as response,
        ):
            for line in response.iter_lines():
                lines.append(line)
    assert lines.count("event: content_block_delta") == 2
    assert "event: message_stop" not in lines


def test_anthropic_errors_and_retry_after(client: httpx.Client) -> None:
    rules = [Rule(match="busy", status=429, retry_after=2), Rule(match="over", status=529)]
    with ScriptedUpstream(rules) as up:
        limited = client.post(f"{up.url}/v1/messages", json=anthropic_body("busy"))
        overloaded = client.post(f"{up.url}/v1/messages", json=anthropic_body("over"))
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "2"
    assert limited.json() == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": limited.json()["error"]["message"]},
    }
    assert overloaded.status_code == 529
    assert overloaded.json()["error"]["type"] == "overloaded_error"


# -- bad requests --------------------------------------------------------------------------


def test_malformed_json_is_a_400_in_each_endpoints_shape(client: httpx.Client) -> None:
    headers = {"content-type": "application/json"}
    with ScriptedUpstream() as up:
        openai = client.post(f"{up.url}/v1/chat/completions", content=b"{nope", headers=headers)
        anthropic = client.post(f"{up.url}/v1/messages", content=b"{nope", headers=headers)
        embeddings = client.post(f"{up.url}/v1/embeddings", content=b"[1, 2", headers=headers)
        no_messages = client.post(f"{up.url}/v1/chat/completions", json={"model": "m"})
        recorded = up.requests

    assert openai.status_code == 400
    assert openai.json()["error"]["type"] == "invalid_request_error"
    assert anthropic.status_code == 400
    assert anthropic.json()["type"] == "error"
    assert anthropic.json()["error"]["type"] == "invalid_request_error"
    assert embeddings.status_code == 400
    assert no_messages.status_code == 400
    assert recorded[0].body is None


def test_invalid_rules_are_rejected() -> None:
    with pytest.raises(ValueError, match="status"):
        Rule(status=99)
    with pytest.raises(ValueError, match="times"):
        Rule(times=-1)
    with pytest.raises(ValueError, match="latency"):
        ScriptedUpstream(latency=(0.2, 0.1))


# -- rules files and the command line ------------------------------------------------------

RULES_YAML = """\
- match: refund
  reply: billing
- match: json
  reply: {category: account}
  usage: [3, 4]
- match: flaky
  status: 429
  retry_after: 0.5
  times: 1
"""


def test_load_rules_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES_YAML, encoding="utf-8")
    rules = load_rules(path)
    assert rules[0] == Rule(match="refund", reply="billing")
    assert rules[1].usage == (3, 4)
    assert rules[2].times == 1

    path.write_text("- match: x\n  replied: oops\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="replied"):
        load_rules(path)


@pytest.mark.slow
def test_command_line_serves_a_script_until_sigterm(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES_YAML, encoding="utf-8")
    command = [sys.executable, "-m", "lockgate.testing", "--port", "0", "--script", str(path)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")
            with httpx.Client(timeout=5) as client:
                response = client.post(f"{url}/v1/chat/completions", json=chat_body("refund"))
                flaky = client.post(f"{url}/v1/chat/completions", json=chat_body("flaky"))
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=5) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert response.json()["choices"][0]["message"]["content"] == "billing"
    assert flaky.status_code == 429
    assert flaky.headers["retry-after"] == "0.5"
