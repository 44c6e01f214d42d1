"""Shared HTTP plumbing: header parsing, SSE decoding, session set-up."""

from __future__ import annotations

import email.utils
import itertools

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockgate.config import ProviderConfig, Timeouts
from lockgate.errors import (
    AuthError,
    ContextWindowExceeded,
    ProviderError,
    RateLimited,
    UpstreamError,
)
from lockgate.providers._http import build_session
from lockgate.providers._wire import (
    SSEDecoder,
    SSEEvent,
    one_line,
    parse_duration,
    parse_retry_after,
    status_error,
)
from lockgate.testing import ScriptedUpstream

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.5", 1.5),
        ("0.25", 0.25),
        ("120", 120.0),
        (" 7 ", 7.0),
        ("-3", 0.0),
        ("0", 0.0),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("soon", None),
        ("inf", None),
        ("nan", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.5s", 1.5),
        ("20ms", 0.02),
        ("6m0s", 360.0),
        ("1h2m3.5s", 3723.5),
        ("2", 2.0),
        ("0s", 0.0),
        ("1.5 s", None),
        ("abc", None),
        ("5x", None),
        ("s", None),
        (None, None),
    ],
)
def test_parse_duration(value: str | None, expected: float | None) -> None:
    result = parse_duration(value)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


def test_one_line_flattens_and_cuts() -> None:
    assert one_line("a\n  b\tc") == "a b c"
    cut = one_line("x" * 400, limit=50)
    assert len(cut) == 50
    assert cut.endswith("…")


def _decode(lines: list[str]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events = [e for e in (decoder.feed(line) for line in lines) if e is not None]
    last = decoder.flush()
    return [*events, last] if last is not None else events


def test_sse_decoder_follows_the_event_stream_rules() -> None:
    lines = [
        ": keep-alive comment",
        "event: message_start",
        'data: {"a":1}',
        "",
        "data:no-space",
        "",
        "data: first",
        "data: second",
        "id: 7",
        "retry: 1000",
        "",
        "",  # a blank line with nothing pending dispatches nothing
        "event: ping",
        "",  # an event name without data is dropped, and does not leak into the next
        "data: [DONE]",
    ]  # no final blank line: flush() still returns the last event
    assert _decode(lines) == [
        SSEEvent("message_start", '{"a":1}'),
        SSEEvent("message", "no-space"),
        SSEEvent("message", "first\nsecond"),
        SSEEvent("message", "[DONE]"),
    ]


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), max_size=20)))
def test_sse_decoder_round_trips_any_data(payloads: list[str]) -> None:
    lines: list[str] = []
    for payload in payloads:
        lines += [f"data: {payload}", ""]
    assert [e.data for e in _decode(lines)] == payloads


@pytest.mark.parametrize(
    ("status", "context", "kind"),
    [
        (401, False, AuthError),
        (403, False, AuthError),
        (429, False, RateLimited),
        (400, True, ContextWindowExceeded),
        (400, False, ProviderError),
        (404, False, ProviderError),
        (422, False, ProviderError),
        (408, False, UpstreamError),
        (409, False, UpstreamError),
        (500, False, UpstreamError),
        (503, False, UpstreamError),
        (529, False, UpstreamError),
        (500, True, UpstreamError),  # a 5xx that mentions the context is still a 5xx
    ],
)
def test_status_error_mapping(status: int, context: bool, kind: type[ProviderError]) -> None:
    error = status_error(
        status,
        where="provider 'p' (openai), model 'm'",
        provider="p",
        message="line one\nline two",
        context_exceeded=context,
        retry_after=2.0,
        auth_hint="set KEY",
    )
    assert type(error) is kind
    assert error.status == status
    assert error.provider == "p"
    text = str(error)
    assert "\n" not in text
    assert text.startswith(f"provider 'p' (openai), model 'm': HTTP {status}: line one line two")
    if kind is AuthError:
        assert text.endswith("; set KEY")
    if isinstance(error, RateLimited):
        assert error.retry_after == 2.0


async def test_build_session_applies_timeouts_limits_and_ignores_proxy_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    config = ProviderConfig(
        timeouts=Timeouts(connect=1.5, read=7.0, total=30.0), options={"max_connections": 150}
    )
    with ScriptedUpstream() as up:
        async with build_session(config, headers={"x-test": "1"}) as session:
            assert session.timeout == aiohttp.ClientTimeout(
                total=None, connect=30.0, sock_connect=1.5, sock_read=7.0
            )
            assert session.trust_env is False
            assert session.connector is not None
            assert session.connector.limit == 150
            async with session.get(up.url + "/v1/models") as response:
                assert response.status == 200  # answered by the upstream, not a proxy at :9
        assert [(r.path, r.headers["x-test"]) for r in up.requests] == [("/v1/models", "1")]


STREAM = (
    ": comment\r\n"
    "event: message_start\r\n"
    'data: {"text": "héllo — 世界"}\r\n'
    "\r\n"
    "data: a\n"
    "data: b\n"
    "\n"
    "data: cr only\r"
    "\r"
    "data: [DONE]"
).encode()
STREAM_EVENTS = [
    SSEEvent("message_start", '{"text": "héllo — 世界"}'),
    SSEEvent("message", "a\nb"),
    SSEEvent("message", "cr only"),
    SSEEvent("message", "[DONE]"),
]


def test_sse_decoder_on_bytes_in_one_read() -> None:
    decoder = SSEDecoder()
    events = decoder.feed_bytes(STREAM)
    assert [*events, decoder.end()] == STREAM_EVENTS
    assert decoder.end() is None


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_sse_decoder_on_bytes_cut_anywhere(cuts: list[int]) -> None:
    # Network reads split lines, CRLF pairs and multi-byte characters at random places.
    bounds = [0, *sorted(cuts), len(STREAM)]
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for start, stop in itertools.pairwise(bounds):
        events += decoder.feed_bytes(STREAM[start:stop])
    last = decoder.end()
    assert [*events, *([last] if last else [])] == STREAM_EVENTS
