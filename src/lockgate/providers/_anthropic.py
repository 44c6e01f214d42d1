"""Provider for the Anthropic Messages API, behind lockgate's OpenAI-shaped contract.

Plain `aiohttp`, not the ``anthropic`` SDK, for the same reasons as the OpenAI provider: a
lean hot path and one retry policy (lockgate's), not two. The translation between the two
shapes lives in `lockgate.providers._anthropic_translate`, documented there.

Configuration (``lockgate.yaml``)::

    providers:
      claude:
        type: anthropic
        api_key_env: ANTHROPIC_API_KEY            # the default
        options: {default_max_tokens: 1024, models: [claude-sonnet-4-5-20250929]}

The base URL is ``base_url``, else ``ANTHROPIC_BASE_URL``, else ``https://api.anthropic.com``;
calls go to ``{base}/v1/messages`` with ``x-api-key`` and ``anthropic-version: 2023-06-01``.
Errors come as ``{"type": "error", "error": {"type", "message"}}``; 529 ``overloaded_error``
is an `UpstreamError` (retryable), 429 a `RateLimited` with ``retry-after``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from lockgate.config import ProviderConfig, Settings
from lockgate.errors import ProviderError, UpstreamError
from lockgate.providers._anthropic_translate import (
    DEFAULT_MAX_TOKENS,
    StreamTranslator,
    response_from,
    to_messages_body,
    uses_response_tool,
)
from lockgate.providers._http import HTTPProvider
from lockgate.providers._types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingResponse,
)
from lockgate.providers._wire import (
    HTTPAnswer,
    decode_json,
    drain,
    parse_retry_after,
    status_error,
)

__all__ = ["API_VERSION", "DEFAULT_BASE_URL", "AnthropicProvider", "create"]

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
_CONTEXT_MARKERS = ("prompt is too long", "exceed context limit", "context window")


def create(name: str, config: ProviderConfig, settings: Settings) -> AnthropicProvider:
    """Factory registered for the ``anthropic`` provider type."""
    return AnthropicProvider(name, config, settings)


def error_details(content: bytes) -> tuple[str, str]:
    """(message, error type) from an Anthropic error body, or the raw text."""
    try:
        body = decode_json(content, "")
    except UpstreamError:
        return content.decode("utf-8", "replace"), ""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or ""), str(error.get("type") or "")
    return str(body), ""


class AnthropicProvider(HTTPProvider):
    """Claude models through the Messages API.

    Example::

        provider = AnthropicProvider("claude", ProviderConfig(), settings)
        reply = await provider.chat(ChatRequest(model="claude-sonnet-4-5", messages=[...]))
    """

    provider_type = "anthropic"
    default_base_url = DEFAULT_BASE_URL
    base_url_env = "ANTHROPIC_BASE_URL"
    default_key_env = "ANTHROPIC_API_KEY"

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        settings: Settings,
    ) -> None:
        self.default_max_tokens = int(config.options.get("default_max_tokens", DEFAULT_MAX_TOKENS))
        super().__init__(
            name,
            config,
            settings,
            headers={"anthropic-version": API_VERSION},
        )

    def _auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key}

    def _error_from_response(self, response: HTTPAnswer, model: str) -> ProviderError:
        message, kind = error_details(response.content)
        hint = self._auth_hint()
        return status_error(
            response.status,
            where=self._where(model),
            provider=self.name,
            message=f"{kind}: {message}" if kind and message else message or kind,
            context_exceeded=any(m in message.lower() for m in _CONTEXT_MARKERS),
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            auth_hint=hint,
        )

    def _body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        try:
            return to_messages_body(
                request, default_max_tokens=self.default_max_tokens, stream=stream
            )
        except ValueError as exc:
            message = f"{self._where(request.model)}: cannot translate the request: {exc}"
            raise ProviderError(message, provider=self.name, status=400) from None

    async def chat(self, request: ChatRequest) -> ChatResponse:
        body = self._body(request, stream=False)
        data = await self._post_json("/v1/messages", body, request.model)
        try:
            return response_from(
                data,
                model=request.model,
                provider=self.name,
                structured=uses_response_tool(request),
            )
        except (KeyError, TypeError, AttributeError):
            raise self._upstream(request.model, "unexpected answer: no content list") from None

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Chunks as they arrive; the ``message_stop`` chunk carries finish reason and usage."""
        model = request.model
        where = self._where(model)
        translator = StreamTranslator(
            where=where, provider=self.name, structured=uses_response_tool(request)
        )
        yielded = 0
        try:
            events = self._sse("/v1/messages", self._body(request, stream=True), model)
            async with aclosing(events) as stream:
                async for event in stream:
                    data = decode_json(event.data, where, provider=self.name)
                    if not isinstance(data, dict):
                        raise self._upstream(model, "a stream event is not an object")
                    chunk = translator.feed(data)
                    if translator.done and chunk is not None:
                        await drain(stream)
                        yield chunk
                        return
                    if chunk is not None:
                        yield chunk
                        yielded += 1
        except ProviderError as exc:
            if yielded:
                cause = str(exc).removeprefix(f"{where}: ")
                what = f"stream ended early after {yielded} chunks: {cause}"
                raise self._upstream(model, what) from exc
            raise
        raise self._upstream(model, f"stream ended early after {yielded} chunks")

    async def embed(self, model: str, inputs: list[str]) -> EmbeddingResponse:
        raise ProviderError(
            f"{self._where(model)}: Anthropic has no embeddings endpoint; "
            "configure an OpenAI-compatible or local provider for embeddings",
            provider=self.name,
        )
