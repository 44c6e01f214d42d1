"""The raw ASGI app behind `ScriptedUpstream`: body reading, routing, pacing, responses.

Raw ASGI (no framework) because the upstream must answer thousands of small requests a
second on one core and stay out of the way of what is being measured. Endpoint handlers
live in `_upstream_openai` and `_upstream_anthropic`; they share the helpers here.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from lockgate.testing._upstream_script import RecordedRequest, Rule, Script

__all__ = [
    "DropConnection",
    "Handler",
    "Options",
    "Request",
    "Responder",
    "UpstreamApp",
    "answer_verbatim",
    "retry_headers",
    "rule_headers",
]

ASGIMessage = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[ASGIMessage]]
Send = Callable[[ASGIMessage], Awaitable[None]]
Headers = Sequence[tuple[bytes, bytes]]

_JSON = b"application/json"


class DropConnection(Exception):
    """Raised by a handler to cut the TCP connection where it stands (no clean end)."""


@dataclass(frozen=True)
class Options:
    """How the upstream answers when a rule leaves something unsaid."""

    default_reply: str
    model_name: str | None
    models: tuple[str, ...]
    embedding_dims: int
    latency: float | tuple[float, float]


@dataclass(frozen=True)
class Request:
    """A parsed request. `body` is None when absent or not a JSON object; `invalid` then
    says why the body was rejected (None when the body was fine or empty)."""

    method: str
    path: str
    body: dict[str, Any] | None
    invalid: str | None


class Responder:
    """Writes one HTTP response through an ASGI `send`."""

    def __init__(self, send: Send) -> None:
        self._send = send

    async def json(self, status: int, body: Any, headers: Headers = ()) -> None:
        """Send a whole JSON response."""
        data = orjson.dumps(body)
        await self._send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", _JSON),
                    (b"content-length", str(len(data)).encode()),
                    *headers,
                ],
            }
        )
        await self._send({"type": "http.response.body", "body": data})

    async def raw(self, status: int, body: bytes, headers: Headers = ()) -> None:
        """Send `body` exactly as given; `headers` should name its content type."""
        await self._send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *headers],
            }
        )
        await self._send({"type": "http.response.body", "body": body})

    async def start_stream(self, status: int = 200, headers: Headers | None = None) -> None:
        """Start a chunked response (no content-length): server-sent events by default."""
        if headers is None:
            headers = [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"),
            ]
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def write(self, data: bytes) -> None:
        """Send one piece of a streamed body."""
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self, data: bytes = b"") -> None:
        """Send the last piece of a streamed body."""
        await self._send({"type": "http.response.body", "body": data})


def rule_headers(rule: Rule) -> list[tuple[bytes, bytes]]:
    """The rule's extra response headers, encoded for ASGI."""
    return [(k.lower().encode(), v.encode()) for k, v in (rule.headers or {}).items()]


async def answer_verbatim(app: UpstreamApp, rule: Rule, out: Responder) -> bool:
    """Send the rule's verbatim `body` if it has one; True when it did. With `hang`, the
    body goes out chunked and the response is never ended (until the server stops)."""
    if rule.body is None:
        return False
    body = rule.body.encode() if isinstance(rule.body, str) else rule.body
    headers = rule_headers(rule)
    if not any(name == b"content-type" for name, _ in headers):
        headers.append((b"content-type", _JSON))
    headers += retry_headers(rule)
    if not rule.hang:
        await out.raw(rule.status, body, headers)
        return True
    await out.start_stream(rule.status, headers)
    await out.write(body)
    await app.hang()
    return True


def retry_headers(rule: Rule) -> list[tuple[bytes, bytes]]:
    """``Retry-After`` written as given, plus OpenAI's millisecond form for fractions."""
    if rule.retry_after is None:
        return []
    return [
        (b"retry-after", str(rule.retry_after).encode()),
        (b"retry-after-ms", str(round(rule.retry_after * 1000)).encode()),
    ]


Handler = Callable[["UpstreamApp", Request, Responder], Awaitable[None]]


class UpstreamApp:
    """One serving run of the upstream; created inside the server's event loop."""

    def __init__(
        self,
        script: Script,
        record: Callable[[RecordedRequest], None],
        options: Options,
        routes: Mapping[str, Mapping[str, Handler]],
        not_found: Handler,
    ) -> None:
        self.script = script
        self.options = options
        self._record = record
        self._routes = routes
        self._not_found = not_found
        self._stopping = asyncio.Event()
        self._random = random.Random()

    def release(self) -> None:
        """Wake every waiting request (latency, delay, hang): the server is stopping."""
        self._stopping.set()

    async def pause(self, seconds: float) -> None:
        """Sleep without blocking other requests; cut the connection if the server stops.

        Raises:
            DropConnection: the server began stopping during the pause.
        """
        if seconds <= 0:
            return
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            return
        raise DropConnection

    async def between_chunks(self, interval: float) -> None:
        """Pace a stream; without an interval, still let other requests run in between.

        Raises:
            DropConnection: the server is stopping.
        """
        if interval > 0:
            await self.pause(interval)
        elif self._stopping.is_set():
            raise DropConnection
        else:
            await asyncio.sleep(0)  # a long stream must not starve concurrent requests

    async def hang(self) -> None:
        """Never answer; the connection is cut when the server stops."""
        await self._stopping.wait()
        raise DropConnection

    async def before_reply(self, rule: Rule) -> None:
        """The rule's own pacing: its delay, then hanging if it says so."""
        await self.pause(rule.delay)
        if rule.hang and rule.body is None:
            await self.hang()

    def model(self, body: Mapping[str, Any]) -> str:
        """The model to report: the configured name, else the one asked for."""
        if self.options.model_name is not None:
            return self.options.model_name
        requested = body.get("model")
        return requested if isinstance(requested, str) else self.options.models[0]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw = await _read_body(receive)
        if raw is None:
            return  # the client left before sending its whole request
        body, invalid = _parse(raw)
        method: str = scope["method"]
        path: str = scope["path"]
        self._record(
            RecordedRequest(
                method=method,
                path=path,
                headers=_headers(scope["headers"]),
                body=body,
                client="{}:{}".format(*scope["client"]) if scope.get("client") else None,
            )
        )
        latency = self.options.latency
        if isinstance(latency, tuple):
            latency = self._random.uniform(*latency)
        await self.pause(latency)
        by_method = self._routes.get(path)
        handler = by_method.get(method, self._not_found) if by_method else self._not_found
        await handler(self, Request(method, path, body, invalid), Responder(send))


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _parse(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    if not raw.strip():
        return None, None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, f"Invalid JSON body: {exc}"
    if not isinstance(data, dict):
        return None, "The request body must be a JSON object."
    return data, None


def _headers(raw: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in raw:
        name, text = key.decode("latin-1").lower(), value.decode("latin-1")
        headers[name] = f"{headers[name]}, {text}" if name in headers else text
    return headers
