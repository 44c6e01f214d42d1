"""The OpenAI wire format at the gateway's edge: request parsing, errors, SSE chunks.

Errors use OpenAI's JSON shape, ``{"error": {"message", "type", "param", "code"}}``, with
the status codes its SDK maps to exceptions (400 BadRequest, 401 Authentication,
403 PermissionDenied, 404 NotFound, 413, 429 RateLimit with ``Retry-After``, 5xx).
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from lockgate.errors import (
    AuthError,
    ContextTooLarge,
    ContextWindowExceeded,
    LockgateError,
    ProviderError,
    RateLimited,
    Timeout,
    UserError,
)
from lockgate.providers import ChatResponse

# Fields the gateway understands; anything else passes through to the provider.
_PARAMS = (
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "response_format",
    "tools",
    "tool_choice",
    "user",
)
_GATEWAY_ONLY = {
    "model",
    "messages",
    "stream",
    "stream_options",
    "metadata",
    "variables",
    "documents",
    "n",
}
_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


class GatewayError(Exception):
    """An error answered to the client in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code
        self.retry_after = retry_after

    def body(self) -> bytes:
        return orjson.dumps(
            {
                "error": {
                    "message": self.message,
                    "type": self.kind,
                    "param": self.param,
                    "code": self.code,
                }
            }
        )

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"retry-after": str(max(1, math.ceil(self.retry_after)))}


@dataclass
class ChatCall:
    """A validated ``/v1/chat/completions`` body."""

    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    stream: bool = False
    include_usage: bool = False
    variables: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    # Retrieved sources sent with the request (`lockgate.gateway._sources`); raw until
    # the target is known, since only prompts with a retrieval section read them.
    documents: Any = None


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise GatewayError(400, "the request body must be a JSON object")
    return data


def parse_chat(body: bytes) -> ChatCall:
    """Validate a chat-completions body; every problem names its `param`."""
    data = parse_json(body)
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise GatewayError(
            400, "'model' is required: a route, PROVIDER/MODEL, or prompt:NAME@LABEL", param="model"
        )
    messages = data.get("messages", [])
    if not isinstance(messages, list):
        raise GatewayError(400, "'messages' must be a list of messages", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise GatewayError(
                400,
                f"messages[{index}] must be an object with a role among {sorted(_ROLES)}",
                param=f"messages[{index}]",
            )
    if not messages and not model.startswith("prompt:"):
        raise GatewayError(400, "'messages' must not be empty", param="messages")
    if data.get("n", 1) != 1:
        raise GatewayError(400, "only n=1 is supported", param="n")
    stream = bool(data.get("stream", False))
    options = data.get("stream_options") or {}
    params = {k: data[k] for k in _PARAMS if data.get(k) is not None}
    extra = {k: v for k, v in data.items() if k not in _PARAMS and k not in _GATEWAY_ONLY}
    for name in ("temperature", "top_p"):
        if name in params and not isinstance(params[name], int | float):
            raise GatewayError(400, f"'{name}' must be a number", param=name)
    if "max_tokens" in params and (
        not isinstance(params["max_tokens"], int) or params["max_tokens"] < 1
    ):
        raise GatewayError(400, "'max_tokens' must be a positive integer", param="max_tokens")
    variables = data.get("variables") or (data.get("metadata") or {})
    if not isinstance(variables, dict):
        raise GatewayError(400, "'variables' (or 'metadata') must be an object", param="variables")
    return ChatCall(
        model=model,
        messages=messages,
        params={**extra, **params},
        stream=stream,
        include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
        variables=variables,
        raw=data,
        documents=data.get("documents"),
    )


def chunk(
    response_id: str,
    model: str,
    created: int,
    *,
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
) -> bytes:
    """One ``chat.completion.chunk`` as an SSE event."""
    body = {
        "id": response_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish_reason}],
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


def usage_chunk(response_id: str, model: str, created: int, response: ChatResponse) -> bytes:
    usage = response.to_openai()["usage"]
    body = {
        "id": response_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage,
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


def error_event(error: GatewayError) -> bytes:
    """A failure after the stream started: an SSE event carrying the error, then [DONE]."""
    return b"data: " + error.body() + b"\n\n" + DONE


DONE = b"data: [DONE]\n\n"


def now() -> int:
    return int(time.time())


def wants_bypass(request: Request) -> bool:
    return (
        request.headers.get("x-lockgate-cache", "").lower() == "bypass"
        or "no-cache" in request.headers.get("cache-control", "").lower()
    )


def map_error(exc: LockgateError) -> GatewayError:
    """Provider and user errors as OpenAI-shaped HTTP answers."""
    if isinstance(exc, RateLimited):
        return GatewayError(429, str(exc), kind="rate_limit_exceeded", retry_after=exc.retry_after)
    if isinstance(exc, Timeout):
        return GatewayError(504, str(exc), kind="timeout")
    if isinstance(exc, ContextWindowExceeded | ContextTooLarge):
        return GatewayError(400, str(exc), param="messages", code="context_length_exceeded")
    if isinstance(exc, AuthError):
        return GatewayError(
            502, f"upstream refused lockgate's credentials: {exc}", kind="upstream_error"
        )
    if isinstance(exc, ProviderError):
        status = exc.status if exc.status and 400 <= exc.status < 500 else 502
        return GatewayError(status, str(exc), kind="upstream_error")
    if isinstance(exc, UserError):
        return GatewayError(400, str(exc))
    return GatewayError(500, str(exc), kind="server_error")


class EventStream(StreamingResponse):
    """A streamed answer whose generator is closed as soon as the response ends.

    When the client hangs up, Starlette stops iterating and leaves the generator
    suspended; its ``finally`` (settling the budget, writing the trace) would then wait
    for garbage collection, and at shutdown it might never run.
    """

    body_iterator: AsyncGenerator[bytes, None]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()
