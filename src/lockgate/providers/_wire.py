"""The wire formats the HTTP providers read: header values, JSON bodies, server-sent
events, and what an error status means.

Nothing here talks to the network; `lockgate.providers._http` does. Errors map onto
`lockgate.errors` the same way for every provider::

    401, 403                  AuthError
    429                       RateLimited (retry_after from Retry-After when sent)
    400 "context too long"    ContextWindowExceeded      (the provider decides)
    408, 409, 5xx             UpstreamError              retryable
    any other 4xx             ProviderError(status)      not retryable
    socket timeouts, deadline Timeout
    connection / protocol     UpstreamError
    malformed JSON            UpstreamError

Every message is one line and starts with the provider instance and the model.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import orjson
from multidict import CIMultiDict

from lockgate.errors import (
    AuthError,
    ContextWindowExceeded,
    ProviderError,
    RateLimited,
    UpstreamError,
)

__all__ = [
    "HTTPAnswer",
    "SSEDecoder",
    "SSEEvent",
    "decode_json",
    "drain",
    "one_line",
    "parse_duration",
    "parse_retry_after",
    "status_error",
]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_MESSAGE_LIMIT = 300
_DRAIN_GRACE = 1.0


def one_line(text: str, limit: int = _MESSAGE_LIMIT) -> str:
    """`text` with whitespace runs collapsed and cut to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: seconds (fractions allowed) or an
    HTTP-date. Past dates give 0; anything unparseable gives None.

    >>> parse_retry_after("1.5")
    1.5
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def parse_duration(value: str | None) -> float | None:
    """Seconds from a Go-style duration as in OpenAI's ``x-ratelimit-reset-*`` headers
    (``"1.5s"``, ``"20ms"``, ``"6m0s"``, ``"1h2m3s"``) or a bare number of seconds."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            return None
        scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
        seconds = sum(float(number) * scale[unit] for number, unit in parts)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def decode_json(content: bytes | str, where: str, *, provider: str | None = None) -> Any:
    """Parsed JSON, or `UpstreamError` naming `where` when the server sent something else."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        head = content[:80]
        snippet = head.decode("utf-8", "replace") if isinstance(head, bytes) else head
        message = f"{where}: malformed JSON from upstream: {one_line(snippet)!r}"
        raise UpstreamError(message, provider=provider) from None


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One server-sent event: its ``event:`` name (``message`` when unnamed) and data."""

    event: str
    data: str


class SSEDecoder:
    """Turns a ``text/event-stream`` into `SSEEvent`s, fed by line or by network read.

    Follows the WHATWG rules that matter here: lines end with LF, CRLF or CR; ``data:``
    lines accumulate (joined by newlines), a blank line dispatches, ``:`` lines are
    comments, one space after the colon is dropped. `end` (and `flush`) return an event
    left without its final blank line, which some servers omit before closing.
    """

    __slots__ = ("_data", "_event", "_pending")

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._pending = b""

    def feed_bytes(self, chunk: bytes) -> list[SSEEvent]:
        """The events completed by `chunk`, a piece of the body cut anywhere."""
        lines = (self._pending + chunk).splitlines(keepends=True)
        # An unfinished line, or one ending in CR that may be the first half of CRLF,
        # waits for the next read.
        self._pending = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
        events = []
        for raw in lines:
            event = self.feed(raw.rstrip(b"\r\n").decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
        return events

    def end(self) -> SSEEvent | None:
        """The body is over: the last event, if one is still pending."""
        if self._pending:
            self.feed(self._pending.rstrip(b"\r\n").decode("utf-8", "replace"))
            self._pending = b""
        return self.flush()

    def feed(self, line: str) -> SSEEvent | None:
        if not line:
            return self.flush()
        if line[0] == ":":
            return None
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None

    def flush(self) -> SSEEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = SSEEvent(self._event or "message", "\n".join(self._data))
        self._event = ""
        self._data = []
        return event


def status_error(
    status: int,
    *,
    where: str,
    provider: str,
    message: str,
    context_exceeded: bool,
    retry_after: float | None,
    auth_hint: str,
) -> ProviderError:
    """The lockgate error for an HTTP error status, with a one-line message."""
    detail = f"{where}: HTTP {status}: {one_line(message) or 'no error message'}"
    if status in (401, 403):
        return AuthError(f"{detail}; {auth_hint}", provider=provider, status=status)
    if status == 429:
        wait = "" if retry_after is None else f" (retry after {retry_after:g}s)"
        return RateLimited(f"{detail}{wait}", provider=provider, retry_after=retry_after)
    if context_exceeded and 400 <= status < 500:
        return ContextWindowExceeded(detail, provider=provider, status=status)
    if status in (408, 409) or status >= 500:
        return UpstreamError(detail, provider=provider, status=status)
    return ProviderError(detail, provider=provider, status=status)


async def drain(events: AsyncIterator[SSEEvent], grace: float = _DRAIN_GRACE) -> None:
    """Read what is left of a stream whose last event has arrived: normally nothing but
    the end of the body. Closing the response before that end would close the connection
    instead of returning it to the pool (measured: ~2x the per-call time of a stream).

    A server that keeps the body open gets `grace` seconds; then the connection is
    dropped, which costs a reconnect, not the answer.
    """
    try:
        async with asyncio.timeout(grace):
            async for _ in events:
                pass
    except (TimeoutError, ProviderError):
        return  # the answer is complete; only the connection is lost


@dataclass(frozen=True, slots=True)
class HTTPAnswer:
    """A non-2xx answer, read whole: what `HTTPProvider._error_from_response` maps.

    `headers` is case-insensitive, whatever client read the answer.
    """

    status: int
    reason: str
    headers: Mapping[str, str]
    content: bytes

    @classmethod
    def of(cls, status: int, content: bytes = b"", **headers: str) -> HTTPAnswer:
        """An answer built by hand (tests and mapping code): ``HTTPAnswer.of(429, b"")``."""
        return cls(status, "", CIMultiDict(headers), content)
