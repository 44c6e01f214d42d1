"""Client-side overhead of the HTTP providers per call.

Run: ``python benchmarks/bench_provider_overhead.py [--calls N]``. Prints figures next to
targets; never fails on timing.

Two measurements:

1. **Real socket.** The scripted upstream serves at 0 ms latency in a *separate process*
   (so its CPU does not share our GIL). Each case runs the provider and, as a baseline, a
   bare `httpx.AsyncClient` doing the same request (one POST, `orjson.loads`, or reading
   the SSE lines) — sequentially and at concurrency 10 and 64. Overhead per call is the
   difference in wall time per call.
2. **No network.** The same calls through `httpx.MockTransport` with canned answers, which
   isolates what the provider itself adds: building the body, translation, deadlines,
   SSE decoding and mapping into lockgate types.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from lockgate.config import ProviderConfig, Settings
from lockgate.providers._anthropic import AnthropicProvider
from lockgate.providers._anthropic_translate import to_messages_body
from lockgate.providers._openai import OpenAIProvider, request_body
from lockgate.providers._types import ChatRequest, Provider
from lockgate.testing import upstream_process

REPLY = "The quick brown fox jumps over the lazy dog near the river bank"  # 13 chunks
REQUEST = ChatRequest(
    model="bench-model",
    messages=[
        {"role": "system", "content": "You are a support triage assistant. Return JSON only."},
        {"role": "user", "content": "I was charged twice this month, please refund one."},
    ],
    temperature=0.2,
    max_tokens=64,
)
TARGET_US = {"chat": 150.0, "stream": 300.0}
CONCURRENCY = (1, 10, 64)

Call = Callable[[], Awaitable[object]]


async def timed(call: Call, calls: int, concurrency: int) -> float:
    """Seconds to make `calls` calls with `concurrency` workers."""
    remaining = iter(range(calls))

    async def worker() -> None:
        for _ in remaining:
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def best_of(
    provider: Call, baseline: Call, calls: int, concurrency: int, repeat: int = 3
) -> tuple[float, float]:
    """Best times of the provider and the baseline, runs interleaved so that load from
    elsewhere on the machine hits both alike."""
    for call in (provider, baseline):
        await timed(call, max(50, calls // 10), concurrency)  # warm the pool and caches
    mine, theirs = [], []
    for _ in range(repeat):
        mine.append(await timed(provider, calls, concurrency))
        theirs.append(await timed(baseline, calls, concurrency))
    return min(mine), min(theirs)


@dataclass
class Case:
    name: str
    kind: str  # "chat" or "stream"
    provider: Call
    baseline: Call


def raw_calls(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> tuple[Call, Call]:
    """Bare-httpx baselines: a whole JSON call (decoded), and a streamed one (bytes read,
    not parsed: the baseline is the transport alone, so every bit of SSE work counts as
    provider overhead)."""
    content = orjson.dumps(body)
    streamed = orjson.dumps({**body, "stream": True})
    headers = {"content-type": "application/json"}

    async def whole() -> object:
        response = await client.post(path, content=content, headers=headers)
        return orjson.loads(response.content)

    async def stream() -> object:
        size = 0
        async with client.stream("POST", path, content=streamed, headers=headers) as response:
            async for data in response.aiter_bytes():
                size += len(data)
        return size

    return whole, stream


def provider_calls(provider: Provider) -> tuple[Call, Call]:
    async def whole() -> object:
        return await provider.chat(REQUEST)

    async def stream() -> object:
        return [chunk async for chunk in provider.stream(REQUEST)]

    return whole, stream


def cases(url: str, settings: Settings, **clients: Any) -> tuple[list[Case], list[Any]]:
    """The four cases (OpenAI or Anthropic, whole or streamed) and what to close after."""
    openai = OpenAIProvider(
        "openai", ProviderConfig(base_url=url + "/v1"), settings, **clients.get("openai", {})
    )
    anthropic = AnthropicProvider(
        "anthropic", ProviderConfig(base_url=url), settings, **clients.get("anthropic", {})
    )
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
    raw_openai = httpx.AsyncClient(
        base_url=url + "/v1", limits=limits, trust_env=False, **clients.get("raw_openai", {})
    )
    raw_anthropic = httpx.AsyncClient(
        base_url=url, limits=limits, trust_env=False, **clients.get("raw_anthropic", {})
    )
    o_whole, o_stream = provider_calls(openai)
    a_whole, a_stream = provider_calls(anthropic)
    ro_whole, ro_stream = raw_calls(
        raw_openai, "/chat/completions", request_body(REQUEST, stream=False)
    )
    ra_whole, ra_stream = raw_calls(raw_anthropic, "/v1/messages", to_messages_body(REQUEST))
    found = [
        Case("openai chat", "chat", o_whole, ro_whole),
        Case("openai stream", "stream", o_stream, ro_stream),
        Case("anthropic chat", "chat", a_whole, ra_whole),
        Case("anthropic stream", "stream", a_stream, ra_stream),
    ]
    return found, [openai, anthropic, raw_openai, raw_anthropic]


async def report(title: str, found: list[Case], calls: int, levels: tuple[int, ...]) -> None:
    print(f"\n{title}")
    header = f"{'case':<18}{'conc':>5}{'calls/s':>10}{'raw calls/s':>13}{'µs/call':>10}"
    print(header + f"{'overhead µs':>13}{'target µs':>11}")
    for case in found:
        for concurrency in levels:
            provider, raw = await best_of(case.provider, case.baseline, calls, concurrency)
            per_call = provider / calls * 1e6
            overhead = (provider - raw) / calls * 1e6
            print(
                f"{case.name:<18}{concurrency:>5}{calls / provider:>10.0f}{calls / raw:>13.0f}"
                f"{per_call:>10.1f}{overhead:>13.1f}{TARGET_US[case.kind]:>11.0f}"
            )


def canned(request: httpx.Request) -> httpx.Response:
    """Answers like the real servers, without a network."""
    body = orjson.loads(request.content)
    words = [w + " " for w in REPLY.split()]
    usage: dict[str, Any] = {"prompt_tokens": 20, "completion_tokens": len(words)}
    data: dict[str, Any]
    events: list[dict[str, Any]]
    if request.url.path.endswith("/chat/completions"):
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": REPLY}
            data = {"model": "m", "choices": [{"message": message, "finish_reason": "stop"}]}
            return httpx.Response(200, content=orjson.dumps({**data, "usage": usage}))
        events = [{"choices": [{"delta": {"content": w}, "finish_reason": None}]} for w in words]
        events += [{"choices": [{"delta": {}, "finish_reason": "stop"}]}, {"usage": usage}]
        sse = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events)
        return httpx.Response(200, content=sse + b"data: [DONE]\n\n")
    anthropic_usage: dict[str, Any] = {"input_tokens": 20, "output_tokens": len(words)}
    if not body.get("stream"):
        reply = {"id": "msg_1", "model": "m", "content": [{"type": "text", "text": REPLY}]}
        data = {**reply, "stop_reason": "end_turn", "usage": anthropic_usage}
        return httpx.Response(200, content=orjson.dumps(data))
    events = [
        {"type": "message_start", "message": {"model": "m", "usage": anthropic_usage}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}},
        *(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}
            for w in words
        ),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": anthropic_usage},
        {"type": "message_stop"},
    ]
    sse = b"".join(
        b"event: " + str(e["type"]).encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n"
        for e in events
    )
    return httpx.Response(200, content=sse)


async def main(calls: int) -> None:
    settings = Settings()
    print(f"provider overhead per call: {calls} calls per figure, best of 3 interleaved runs")
    print(f"streamed reply: {len(REPLY.split())} chunks; targets are client-side µs per call")

    mock = {"transport": httpx.MockTransport(canned)}
    clients = dict.fromkeys(("openai", "anthropic", "raw_openai", "raw_anthropic"), mock)
    found, closing = cases("http://mock.test", settings, **clients)
    await report("no network (httpx.MockTransport): what the provider adds", found, calls, (1,))
    for item in closing:
        await item.aclose()

    with upstream_process(default_reply=REPLY) as url:
        found, closing = cases(url, settings)
        await report(
            f"real socket: scripted upstream at 0 ms latency ({url})", found, calls, CONCURRENCY
        )
        for item in closing:
            await item.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000, help="calls per measurement")
    asyncio.run(main(parser.parse_args().calls))
