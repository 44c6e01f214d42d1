"""What the HTTP providers share: the pooled session, its configuration, deadlines.

The OpenAI-compatible and Anthropic providers speak to their servers with plain `aiohttp`
rather than the vendors' SDKs. The gateway's hot path then pays for one JSON encode, one
request and one decode, nothing else; importing an SDK costs hundreds of milliseconds and
brings its own retry loop, which would fight `lockgate.providers._retry`.

Why aiohttp and not httpx: at 64 concurrent gateway requests, httpx + httpcore + anyio +
h11 took 46% of the gateway's CPU (httpcore scans its whole pool for every request, and
parses HTTP in pure Python); aiohttp's C parser and per-host connection deques cost a
fraction of that (see ``benchmarks/bench_gateway.py`` and the changelog for figures).

Every call has three clocks: ``connect`` and ``read`` (per socket operation, enforced by
aiohttp) and ``total`` (wall clock for the whole call, enforced with `asyncio.timeout`). A
stream checks the total deadline around every read rather than across its ``yield``\\s, so
a deadline never fires inside the consumer's code.

Answers are read with `lockgate.providers._wire` (JSON, server-sent events, error statuses).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import aiohttp
import certifi
import orjson

from lockgate.config import ProviderConfig, Settings
from lockgate.errors import (
    ConfigError,
    ProviderError,
    Timeout,
    UpstreamError,
)
from lockgate.providers._types import Message, ModelInfo, TokenCount
from lockgate.providers._wire import HTTPAnswer, SSEDecoder, SSEEvent, decode_json, one_line

if TYPE_CHECKING:
    from lockgate.accounting import PriceTable

__all__ = [
    "HTTPProvider",
    "auth_hint",
    "build_session",
    "check_header",
    "check_url",
    "key_env_for",
    "tls_context",
]

_JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"}
_SSE_HEADERS = {"content-type": "application/json", "accept": "text/event-stream"}
# What a call can raise besides HTTP answers: aiohttp's errors, the deadline, and the
# OSError/ValueError that sockets and header validation raise directly.
_TRANSPORT_ERRORS = (TimeoutError, aiohttp.ClientError, OSError, ValueError)


def key_env_for(config: ProviderConfig, default: str) -> str | None:
    """The variable holding an entry's API key. The vendor's default variable applies only
    to an entry without its own ``base_url``: a proxy or self-hosted server configured
    next to it must never receive the vendor's key."""
    return config.api_key_env or (default if config.base_url is None else None)


def auth_hint(provider: str, api_key_env: str | None, has_key: bool) -> str:
    """What to do about a 401/403, worded for how the key was (not) configured."""
    if has_key:
        return f"the key in {api_key_env} was refused; check it"
    if api_key_env:
        return f"no API key was sent; set the environment variable {api_key_env}"
    return (
        f"no API key was sent; set api_key_env for provider '{provider}' in lockgate.yaml "
        "to the variable holding the key"
    )


def tls_context(config: ProviderConfig, provider: str) -> ssl.SSLContext:
    """The certificates a provider trusts: ``options.ca_bundle`` when set, else certifi's
    bundle (the same on every machine, as with httpx before; the system store is missing
    in slim images and unset in some macOS Pythons).

    Raises:
        ConfigError: the bundle is missing or not a PEM file, naming the path.
    """
    bundle = config.options.get("ca_bundle")
    if not bundle:
        return _certifi_context()
    try:
        return ssl.create_default_context(cafile=str(bundle))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"provider '{provider}': options.ca_bundle '{bundle}' cannot be loaded ({exc}); "
            "give the PEM file of the CA that signed the server's certificate"
        ) from None


@functools.cache
def _certifi_context() -> ssl.SSLContext:
    # One per process: loading the bundle costs ~10 ms and ~1 MB per context.
    return ssl.create_default_context(cafile=certifi.where())


def check_url(value: str, what: str, provider: str) -> str:
    """`value` if it is an ``http(s)://`` URL with a host, else a `ConfigError`."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"provider '{provider}': {what} '{value}' is not an http:// or https:// URL; "
            "write it in full, e.g. http://localhost:8000/v1"
        )
    return value


def check_header(value: str, variable: str | None) -> str:
    """An API key fit for an HTTP header: surrounding whitespace (a trailing newline from
    a secret file) is dropped; control characters left inside are a `ConfigError`."""
    key = value.strip()
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key) or not key.isascii():
        raise ConfigError(
            f"the API key in {variable or 'the configured variable'} contains control or "
            "non-ASCII characters; set the variable to the key alone"
        )
    return key


def build_session(
    config: ProviderConfig, *, headers: Mapping[str, str], tls: ssl.SSLContext | None = None
) -> aiohttp.ClientSession:
    """One pooled session for a provider instance, bound to the running event loop.

    ``config.options`` may set ``max_connections`` (default 200), ``proxy`` (an
    ``http://`` URL) and ``ca_bundle`` (a PEM file; see `tls_context`). The session does
    not read proxy or certificate variables from the environment (``trust_env=False``):
    lockgate reads the environment only through `Settings`, and a stray ``HTTP_PROXY``
    must not reroute calls to a local server.
    """
    timeouts = config.timeouts
    options = config.options
    connector = aiohttp.TCPConnector(
        limit=max(1, int(options.get("max_connections", 200))),
        limit_per_host=0,
        keepalive_timeout=30.0,
        ssl=tls if tls is not None else tls_context(config, "?"),
    )
    return aiohttp.ClientSession(
        connector=connector,
        headers=dict(headers),
        # `connect` covers the wait for a pooled connection, bounded by the total deadline:
        # under load a request should queue, not fail after the (short) connect timeout.
        timeout=aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.total,
            sock_connect=timeouts.connect,
            sock_read=timeouts.read,
        ),
        trust_env=False,
        # Error bodies are read and decoded here; a 4xx must not raise inside aiohttp.
        raise_for_status=False,
    )


class HTTPProvider(ABC):
    """Base of the HTTP providers: the pooled session, deadlines and transport errors.

    Subclasses set `provider_type`, the vendor's defaults (`default_base_url`, and the
    variables `base_url_env` and `default_key_env`), and implement `_auth_headers` and
    `_error_from_response`. They do not retry: callers wrap calls with
    `lockgate.providers._retry.with_retries`.

    The base URL is the entry's ``base_url``, else the vendor's variable, else the
    vendor's host. The key comes from ``api_key_env``; the vendor's default variable is
    used only by an entry without its own ``base_url`` (see `key_env_for`).

    An aiohttp session belongs to the event loop it was made in, so the session is made
    on first use in a loop; a provider used from a second loop (a later `asyncio.run`)
    gets a new session there.
    """

    provider_type: ClassVar[str] = "http"
    default_base_url: ClassVar[str]
    base_url_env: ClassVar[str]
    default_key_env: ClassVar[str]

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        settings: Settings,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.api_key_env = key_env_for(config, self.default_key_env)
        api_key = settings.environment(self.api_key_env) if self.api_key_env else None
        if api_key is not None:
            api_key = check_header(api_key, self.api_key_env)
        self._has_key = api_key is not None
        self._headers = {
            **(headers or {}),
            **(self._auth_headers(api_key) if api_key else {}),
        }
        base_url = (
            config.base_url or settings.environment(self.base_url_env) or self.default_base_url
        )
        self.name = name
        self.config = config
        self.settings = settings
        self.base_url = check_url(base_url, "base_url", name).rstrip("/")
        proxy = config.options.get("proxy") or None
        self._proxy: str | None = check_url(str(proxy), "options.proxy", name) if proxy else None
        self._tls = tls_context(config, name)
        self._total = config.timeouts.total
        self._prices: PriceTable | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._session_: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._session_
        if session is not None and self._session_loop is loop and not session.closed:
            return session
        if session is not None and not session.closed:
            # Another loop owns it (usually one that has ended): its connections cannot be
            # used or closed from here. Call `aclose` in the loop that used a provider.
            session.detach()
        session = build_session(self.config, headers=self._headers, tls=self._tls)
        self._session_, self._session_loop = session, loop
        return session

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _where(self, model: str) -> str:
        return f"provider '{self.name}' ({self.provider_type}), model '{model}'"

    @abstractmethod
    def _auth_headers(self, api_key: str) -> dict[str, str]:
        """The headers that carry the key (each vendor names them its way)."""

    def _auth_hint(self) -> str:
        return auth_hint(self.name, self.api_key_env, self._has_key)

    @abstractmethod
    def _error_from_response(self, response: HTTPAnswer, model: str) -> ProviderError:
        """The typed error for a non-2xx answer (each wire format words errors its way)."""

    def _upstream(self, model: str, what: str) -> UpstreamError:
        return UpstreamError(f"{self._where(model)}: {what}", provider=self.name)

    def _transport_error(self, exc: Exception, model: str) -> ProviderError:
        where = self._where(model)
        detail = one_line(str(exc)) or type(exc).__name__
        # aiohttp's socket timeouts are TimeoutErrors too: tell them from the deadline.
        timeouts = self.config.timeouts
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            message = (
                f"{where}: no connection to {self.base_url} within the connect timeout of "
                f"{timeouts.connect:g}s"
            )
            return Timeout(message, provider=self.name)
        if isinstance(exc, aiohttp.ServerTimeoutError):
            message = f"{where}: read timeout: no data from {self.base_url} for {timeouts.read:g}s"
            return Timeout(message, provider=self.name)
        if isinstance(exc, TimeoutError):
            message = f"{where}: no complete answer within the total deadline of {self._total:g}s"
            return Timeout(message, provider=self.name)
        return UpstreamError(
            f"{where}: failed talking to {self.base_url}: {detail}", provider=self.name
        )

    def _answer_error(
        self, response: aiohttp.ClientResponse, content: bytes, model: str
    ) -> ProviderError:
        if response.status < 400:
            # Never followed: the request would carry the API key to wherever it points.
            target = response.headers.get("location", "nowhere")
            message = (
                f"{self._where(model)}: HTTP {response.status} redirect to {target}; lockgate "
                f"does not follow redirects (they would carry the API key along): set the "
                f"provider's base_url to the final address"
            )
            return ProviderError(message, provider=self.name, status=response.status)
        answer = HTTPAnswer(response.status, response.reason or "", response.headers, content)
        return self._error_from_response(answer, model)

    async def _post_json(self, path: str, body: dict[str, Any], model: str) -> Any:
        """POST `body` as JSON and return the decoded JSON answer, or raise a mapped error."""
        try:
            async with (
                asyncio.timeout(self._total),
                self._session().post(
                    self._url(path),
                    data=orjson.dumps(body),
                    headers=_JSON_HEADERS,
                    proxy=self._proxy,
                    allow_redirects=False,
                ) as response,
            ):
                content = await response.read()
        except _TRANSPORT_ERRORS as exc:
            raise self._transport_error(exc, model) from exc
        if response.status >= 300:
            raise self._answer_error(response, content, model)
        return decode_json(content, self._where(model), provider=self.name)

    async def _sse(
        self, path: str, body: dict[str, Any], model: str
    ) -> AsyncGenerator[SSEEvent, None]:
        """POST `body` and yield the server-sent events of the answer.

        The total deadline is checked around each read, never across a ``yield``.
        """
        deadline = asyncio.get_running_loop().time() + self._total
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._session().post(
                    self._url(path),
                    data=orjson.dumps(body),
                    headers=_SSE_HEADERS,
                    proxy=self._proxy,
                    allow_redirects=False,
                )
        except _TRANSPORT_ERRORS as exc:
            raise self._transport_error(exc, model) from exc
        try:
            if response.status >= 300:
                try:
                    async with asyncio.timeout_at(deadline):
                        content = await response.read()
                except _TRANSPORT_ERRORS as exc:
                    raise self._transport_error(exc, model) from exc
                raise self._answer_error(response, content, model)
            decoder = SSEDecoder()
            # Whatever the network delivered, not lines: one deadline check per read.
            reader = response.content
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        data = await reader.readany()
                except _TRANSPORT_ERRORS as exc:
                    raise self._transport_error(exc, model) from exc
                if not data:
                    break
                for event in decoder.feed_bytes(data):
                    yield event
            last = decoder.end()
            if last is not None:
                yield last
        finally:
            # Back to the pool when the body was read to its end, else the connection closes.
            response.release()

    def count_tokens(self, model: str, messages: list[Message]) -> TokenCount:
        """Prompt tokens of `messages` (exact where lockgate has the model's tokenizer)."""
        from lockgate.accounting import count_message_tokens

        return count_message_tokens(self.provider_type, model, messages)

    def context_window(self, model: str) -> int | None:
        """The model's context window from lockgate's price table and overrides."""
        if self._prices is None:
            from lockgate.accounting import PriceTable

            self._prices = PriceTable(self.settings.prices)
        return self._prices.context_window(
            self.provider_type, model, instance=self.name, base_url=self.base_url
        )

    def models(self) -> list[ModelInfo]:
        """The models listed under ``options.models`` in the configuration (no network)."""
        listed = self.config.options.get("models") or []
        return [
            ModelInfo(provider=self.name, model=str(m), context_window=self.context_window(str(m)))
            for m in listed
        ]

    async def aclose(self) -> None:
        """Close the pooled connections; a later call opens a new pool."""
        session, self._session_ = self._session_, None
        if session is None or session.closed:
            return
        if self._session_loop is asyncio.get_running_loop():
            await session.close()
        else:
            session.detach()  # made in another loop, which owns its sockets
