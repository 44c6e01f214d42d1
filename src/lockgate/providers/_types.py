"""The provider contract: requests, responses, stream chunks, and the `Provider` protocol.

Everything that calls a model (eval runner, gateway, judges, monitors) speaks these types.
Messages use the OpenAI chat shape (``{"role": "user", "content": "…"}``) because that is
what users and most servers already speak; providers with another wire format (Anthropic)
translate at their edge.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Message = dict[str, Any]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion call, addressed to a provider's own model id.

    `model` is the provider's id without the ``PROVIDER/`` prefix
    (``gpt-4o-mini-2024-07-18``, ``qwen2.5-coder-1.5b-instruct``).
    `response_format` uses OpenAI's shape: ``{"type": "json_object"}`` or
    ``{"type": "json_schema", "json_schema": {"name": …, "schema": {…}}}``.
    """

    model: str
    messages: list[Message]
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    user: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def params(self) -> dict[str, Any]:
        """Every field but `model` and `messages`, without unset ones (cache keys use this)."""
        data = asdict(self)
        data.pop("model")
        data.pop("messages")
        extra = data.pop("extra")
        return {k: v for k, v in {**data, **extra}.items() if v is not None}


@dataclass(frozen=True)
class Usage:
    """Token usage of one call. `estimated` is true when counted by lockgate, not reported
    by the provider, and not exact."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class ChatResponse:
    """A whole chat completion."""

    model: str
    content: str | None
    finish_reason: FinishReason
    usage: Usage
    tool_calls: list[dict[str, Any]] | None = None
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))
    provider: str | None = None

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI ``chat.completion`` JSON body for this response."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
            "usage": {
                "prompt_tokens": self.usage.input_tokens,
                "completion_tokens": self.usage.output_tokens,
                "total_tokens": self.usage.total_tokens,
                "prompt_tokens_details": {"cached_tokens": self.usage.cached_input_tokens},
            },
        }


@dataclass(frozen=True)
class ChatChunk:
    """One streamed piece. The last chunk has `finish_reason` set; `usage` comes on the
    last chunk when the provider reports it."""

    delta: str = ""
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    tool_calls: list[dict[str, Any]] | None = None
    model: str | None = None


@dataclass(frozen=True)
class EmbeddingResponse:
    model: str
    vectors: list[list[float]]
    usage: Usage


@dataclass(frozen=True)
class TokenCount:
    """A token count and how it was obtained. `exact` is false for estimates, which must be
    shown as estimates wherever they appear."""

    tokens: int
    exact: bool
    tokenizer: str


@dataclass(frozen=True)
class ModelInfo:
    """What `lockgate models list` shows for one model of a provider."""

    provider: str
    model: str
    context_window: int | None = None
    description: str = ""
    available: bool = True
    note: str = ""


@runtime_checkable
class Provider(Protocol):
    """What every provider implements. Instances are created by registered factories
    (see `lockgate.providers.register`), one per configured instance name."""

    name: str

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """A whole completion. Raises the `ProviderError` subclasses of lockgate.errors."""
        ...

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Chunks as they arrive; a failure after the first chunk raises `UpstreamError`."""
        ...

    async def embed(self, model: str, inputs: list[str]) -> EmbeddingResponse: ...

    def count_tokens(self, model: str, messages: list[Message]) -> TokenCount: ...

    def context_window(self, model: str) -> int | None: ...

    def models(self) -> list[ModelInfo]: ...

    async def aclose(self) -> None: ...


def content_text(content: Any) -> str:
    """The text of a message's ``content``: the string itself, or the text parts of a
    multi-part content joined by newlines (images and audio contribute nothing)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""
