"""Provider for OpenAI and every server that speaks its chat API (vLLM, Ollama, llama.cpp
server, LM Studio, proxies).

Plain `aiohttp`, not the ``openai`` SDK: the gateway calls this on every request, and the SDK
adds import time, its own retries and a second object model to translate from.

Configuration (``lockgate.yaml``)::

    providers:
      openai: {}                                   # api.openai.com, key in OPENAI_API_KEY
      vllm:
        type: openai
        base_url: http://gpu-box:8000/v1
        api_key_env: VLLM_API_KEY                  # optional; no key, no header
        options: {models: [qwen2.5-7b-instruct]}   # what `models()` lists

The base URL is ``base_url``, else the ``OPENAI_BASE_URL`` variable, else
``https://api.openai.com/v1``. The key comes from the variable ``api_key_env`` names
and is sent as ``Authorization: Bearer``. ``OPENAI_API_KEY`` is the default only for an
entry without its own ``base_url``, so a self-hosted server never receives the OpenAI key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

from lockgate.config import ProviderConfig, Settings
from lockgate.errors import ProviderError, UpstreamError
from lockgate.providers._http import HTTPProvider
from lockgate.providers._types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingResponse,
    FinishReason,
    Usage,
)
from lockgate.providers._wire import (
    HTTPAnswer,
    decode_json,
    drain,
    one_line,
    parse_duration,
    parse_retry_after,
    status_error,
)

__all__ = ["DEFAULT_BASE_URL", "OpenAIProvider", "create"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "exceed_context_size",
    "exceeds the available context size",
)


def create(name: str, config: ProviderConfig, settings: Settings) -> OpenAIProvider:
    """Factory registered for the ``openai`` provider type."""
    return OpenAIProvider(name, config, settings)


def finish_reason(value: object) -> FinishReason:
    """OpenAI's finish_reason as lockgate's (unknown or missing values count as stop)."""
    return _FINISH.get(value, "stop") if isinstance(value, str) else "stop"


def usage_from(data: object) -> Usage | None:
    """`Usage` from an OpenAI ``usage`` object, or None when there is none."""
    if not isinstance(data, dict):
        return None
    details = data.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        input_tokens=int(data.get("prompt_tokens") or 0),
        output_tokens=int(data.get("completion_tokens") or 0),
        cached_input_tokens=int(cached or 0),
    )


def is_context_error(message: str, code: str) -> bool:
    """Whether an error says the prompt does not fit the model's context window."""
    text = f"{code} {message}".lower()
    return any(marker in text for marker in _CONTEXT_MARKERS)


def error_details(content: bytes | str) -> tuple[str, str]:
    """(message, code) from the error bodies OpenAI-compatible servers send:
    ``{"error": {"message", "code", "type"}}``, ``{"error": "…"}``, ``{"message": "…"}``,
    ``{"detail": "…"}``, or plain text."""
    try:
        body = decode_json(content, "")
    except UpstreamError:
        return content.decode("utf-8", "replace") if isinstance(content, bytes) else content, ""
    if not isinstance(body, dict):
        return str(body), ""
    error = body.get("error", body)
    if isinstance(error, str):
        return error, str(body.get("code") or "")
    if not isinstance(error, dict):
        return str(error), ""
    message = error.get("message") or error.get("detail") or ""
    code = error.get("code") or error.get("type") or ""
    return str(message), str(code)


def rate_limit_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait after a 429: ``retry-after-ms``, ``Retry-After``, else the
    ``x-ratelimit-reset-*`` of the exhausted limit (the longer one when unclear)."""
    if "retry-after-ms" in headers:
        millis = parse_duration(headers["retry-after-ms"])
        if millis is not None:
            return millis / 1000.0
    retry_after = parse_retry_after(headers.get("retry-after"))
    if retry_after is not None:
        return retry_after
    waits: dict[str, float] = {}
    for kind in ("requests", "tokens"):
        wait = parse_duration(headers.get(f"x-ratelimit-reset-{kind}"))
        if wait is not None:
            waits[kind] = wait
    exhausted = [w for k, w in waits.items() if headers.get(f"x-ratelimit-remaining-{k}") == "0"]
    candidates = exhausted or list(waits.values())
    return max(candidates) if candidates else None


def request_body(request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    """The JSON body of ``POST /chat/completions`` for `request`."""
    body: dict[str, Any] = {"model": request.model, "messages": request.messages}
    for key, value in (
        ("temperature", request.temperature),
        ("top_p", request.top_p),
        ("max_tokens", request.max_tokens),
        ("stop", request.stop),
        ("seed", request.seed),
        ("response_format", request.response_format),
        ("tools", request.tools),
        ("tool_choice", request.tool_choice),
        ("user", request.user),
    ):
        if value is not None:
            body[key] = value
    body.update(request.extra)
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


class OpenAIProvider(HTTPProvider):
    """An OpenAI-compatible chat and embeddings server.

    Example::

        provider = OpenAIProvider("vllm", ProviderConfig(base_url="http://gpu:8000/v1"), s)
        reply = await provider.chat(ChatRequest(model="qwen", messages=[...]))
    """

    provider_type = "openai"
    default_base_url = DEFAULT_BASE_URL
    base_url_env = "OPENAI_BASE_URL"
    # Sent only to OpenAI itself (or the OPENAI_BASE_URL set for it): a vLLM or Ollama
    # entry without api_key_env never receives it.
    default_key_env = "OPENAI_API_KEY"

    def _auth_headers(self, api_key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"}

    def _error_from_response(self, response: HTTPAnswer, model: str) -> ProviderError:
        message, code = error_details(response.content)
        status = response.status
        hint = self._auth_hint()
        return status_error(
            status,
            where=self._where(model),
            provider=self.name,
            message=message or response.reason,
            context_exceeded=status == 400 and is_context_error(message, code),
            retry_after=rate_limit_wait(response.headers) if status == 429 else None,
            auth_hint=hint,
        )

    def _shape_error(self, model: str, what: str) -> UpstreamError:
        return self._upstream(model, f"unexpected answer from upstream: {what}")

    async def chat(self, request: ChatRequest) -> ChatResponse:
        data = await self._post_json(
            "/chat/completions", request_body(request, stream=False), request.model
        )
        try:
            choice = data["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError):
            raise self._shape_error(request.model, "no choices[0].message") from None
        if not isinstance(message, dict):
            raise self._shape_error(request.model, "choices[0].message is not an object")
        content = message.get("content")
        usage = usage_from(data.get("usage"))
        if usage is None:
            usage = self._estimate_usage(request, content)
        fields: dict[str, Any] = {}
        if isinstance(data.get("id"), str):
            fields["id"] = data["id"]
        if isinstance(data.get("created"), int):
            fields["created"] = data["created"]
        return ChatResponse(
            model=str(data.get("model") or request.model),
            content=content if isinstance(content, str) else None,
            finish_reason=finish_reason(choice.get("finish_reason")),
            usage=usage,
            tool_calls=message.get("tool_calls") or None,
            provider=self.name,
            **fields,
        )

    def _estimate_usage(self, request: ChatRequest, content: object) -> Usage:
        # Some servers (older llama.cpp, proxies) omit usage; lockgate still has to bill.
        prompt = self.count_tokens(request.model, request.messages)
        reply = self.count_tokens(request.model, [{"role": "assistant", "content": content or ""}])
        return Usage(input_tokens=prompt.tokens, output_tokens=reply.tokens, estimated=True)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Chunks as they arrive. The finish chunk is held back until the usage chunk (sent
        after it with ``include_usage``) or ``[DONE]``, so the last chunk carries both."""
        model = request.model
        where = self._where(model)
        yielded = 0
        done = False
        finish: FinishReason | None = None
        usage: Usage | None = None
        upstream_model: str | None = None
        try:
            events = self._sse("/chat/completions", request_body(request, stream=True), model)
            async with aclosing(events) as stream:
                async for event in stream:
                    if event.data == "[DONE]":
                        done = True
                        await drain(stream)
                        break
                    data = decode_json(event.data, where, provider=self.name)
                    if not isinstance(data, dict):
                        raise self._shape_error(model, "a stream event is not an object")
                    if data.get("error"):
                        message, _ = error_details(event.data)
                        raise self._upstream(model, f"error event in stream: {one_line(message)}")
                    upstream_model = data.get("model") or upstream_model
                    usage = usage_from(data.get("usage")) or usage
                    choices = data.get("choices") or ()
                    delta: dict[str, Any] = {}
                    if choices and isinstance(choices[0], dict):
                        delta = choices[0].get("delta") or {}
                        reason = choices[0].get("finish_reason")
                        if reason is not None:
                            finish = finish_reason(reason)
                    text = delta.get("content") or ""
                    tool_calls = delta.get("tool_calls") or None
                    if text or tool_calls:
                        yield ChatChunk(delta=text, tool_calls=tool_calls, model=upstream_model)
                        yielded += 1
        except ProviderError as exc:
            if yielded:
                cause = str(exc).removeprefix(f"{where}: ")
                what = f"stream ended early after {yielded} chunks: {cause}"
                raise self._upstream(model, what) from exc
            raise
        if not done:
            raise self._upstream(model, f"stream ended early after {yielded} chunks")
        yield ChatChunk(finish_reason=finish or "stop", usage=usage, model=upstream_model)

    async def embed(self, model: str, inputs: list[str]) -> EmbeddingResponse:
        data = await self._post_json("/embeddings", {"model": model, "input": inputs}, model)
        try:
            rows = sorted(data["data"], key=lambda row: row.get("index", 0))
            vectors = [list(row["embedding"]) for row in rows]
        except (KeyError, TypeError, AttributeError):
            raise self._shape_error(model, "no data[].embedding") from None
        if len(vectors) != len(inputs):
            raise self._shape_error(model, f"{len(vectors)} vectors for {len(inputs)} inputs")
        usage = usage_from(data.get("usage"))
        if usage is None:
            counted = self.count_tokens(model, [{"role": "user", "content": t} for t in inputs])
            usage = Usage(input_tokens=counted.tokens, estimated=True)
        return EmbeddingResponse(
            model=str(data.get("model") or model), vectors=vectors, usage=usage
        )
