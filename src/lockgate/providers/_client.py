"""`Client`: the one way lockgate calls a model.

It resolves a model name (an alias from ``lockgate.yaml`` or ``PROVIDER/MODEL``) to a
provider instance, consults the response cache, retries transient failures with the
provider's policy, counts tokens when the provider did not, and prices the call. The eval
runner, judges, monitors and the CLI all go through it; the gateway reuses its parts.

Example:
    >>> async with Client(load_settings()) as client:
    ...     result = await client.chat("local/smollm2-135m-instruct",
    ...                                [{"role": "user", "content": "Hi"}])
    ...     print(result.text, result.usage.total_tokens, format_usd(result.cost))
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Literal

from lockgate.accounting import Cost, ModelPrice, PriceTable, cost
from lockgate.config import ProviderConfig, Settings
from lockgate.errors import ConfigError
from lockgate.providers._cache import CacheMode, ResponseCache
from lockgate.providers._registry import BUILTIN_PROVIDERS, factory_for
from lockgate.providers._retry import RetryPolicy, stream_with_retries, with_retries
from lockgate.providers._types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingResponse,
    Message,
    Provider,
    TokenCount,
    Usage,
)
from lockgate.store import Store

CacheStatus = Literal["hit", "miss", "off"]
_REQUEST_FIELDS = frozenset(ChatRequest.__dataclass_fields__) - {"model", "messages", "extra"}


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model name leads: provider instance, its type, and the provider's model id."""

    provider: str
    provider_type: str
    model: str
    alias: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True)
class ChatResult:
    """A finished call with everything needed to account for it."""

    response: ChatResponse
    resolved: ResolvedModel
    cost: Cost
    latency_s: float
    cache: CacheStatus
    time_to_first_token_s: float | None = None
    retries: int = 0

    @property
    def text(self) -> str:
        return self.response.content or ""

    @property
    def usage(self) -> Usage:
        return self.response.usage


@dataclass
class StreamResult:
    """Filled in while a `Client.stream` is consumed; complete once it is exhausted."""

    resolved: ResolvedModel
    chunks: list[str] = field(default_factory=list)
    result: ChatResult | None = None


class Client:
    """Resolve, cache, retry, count and price model calls."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        cache_mode: CacheMode | None = None,
        max_retries: int | None = None,
    ) -> None:
        self.settings = settings
        self.prices = PriceTable(settings.prices)
        self._providers: dict[str, Provider] = {}
        self._configs = {name: ProviderConfig() for name in BUILTIN_PROVIDERS}
        self._configs.update(settings.providers)
        self._resolved: dict[str, ResolvedModel] = {}
        self._policies: dict[str, RetryPolicy] = {}
        self._max_retries = max_retries  # overrides every provider's max_retries
        self._owns_store = False
        mode: CacheMode = cache_mode or ("use" if settings.cache.enabled else "off")
        self.cache: ResponseCache | None = None
        if mode != "off":
            if store is None:
                store = Store.open(settings)
                self._owns_store = True
            self.cache = ResponseCache(store, ttl_seconds=settings.cache.ttl_seconds, mode=mode)
        self._store = store

    # -- resolution -----------------------------------------------------------------

    def provider_configs(self) -> dict[str, ProviderConfig]:
        """Configured provider instances plus the built-ins under their own names."""
        return dict(self._configs)

    def resolve(self, model: str) -> ResolvedModel:
        """``gpt-class-foundation-model`` → alias target; ``openai/gpt-4o`` → provider + id.

        Raises:
            ConfigError: an unknown provider, a missing ``PROVIDER/`` prefix, or an alias loop.
        """
        cached = self._resolved.get(model)
        if cached is None:
            cached = self._resolved[model] = self._resolve(model)
        return cached

    def _resolve(self, model: str) -> ResolvedModel:
        alias = None
        seen: list[str] = []
        name = model
        while name in self.settings.aliases:
            if name in seen:
                raise ConfigError(f"model aliases loop: {' → '.join([*seen, name])}")
            seen.append(name)
            alias = alias or name
            name = self.settings.aliases[name]
        provider, sep, model_id = name.partition("/")
        configs = self._configs
        if not sep or not model_id:
            raise ConfigError(
                f"model '{model}' names no provider: write PROVIDER/MODEL (for example "
                f"openai/{model} or local/{model}) or map it under 'aliases:' in lockgate.yaml"
            )
        if provider not in configs:
            raise ConfigError(
                f"unknown provider '{provider}' in '{name}'; configured providers: "
                f"{', '.join(sorted(configs))} (add it under 'providers:' in lockgate.yaml)"
            )
        config = configs[provider]
        return ResolvedModel(provider, config.type or provider, model_id, alias)

    def provider(self, name: str) -> Provider:
        """The provider instance `name`, created on first use."""
        if name not in self._providers:
            if name not in self._configs:
                raise ConfigError(f"unknown provider '{name}'")
            config = self._configs[name]
            self._providers[name] = factory_for(config.type or name)(name, config, self.settings)
        return self._providers[name]

    def retry_policy(self, provider: str) -> RetryPolicy:
        policy = self._policies.get(provider)
        if policy is None:
            config = self._configs[provider]
            policy = self._policies[provider] = RetryPolicy(
                max_retries=config.max_retries if self._max_retries is None else self._max_retries,
                base_delay=config.retry_base_delay,
                max_delay=config.retry_max_delay,
            )
        return policy

    # -- calls ----------------------------------------------------------------------

    def request(self, model: str, messages: list[Message], **params: Any) -> ChatRequest:
        """Build the `ChatRequest` a call to `model` would send (after alias resolution)."""
        resolved = self.resolve(model)
        extra = {k: v for k, v in params.items() if k not in _REQUEST_FIELDS and v is not None}
        fields = {k: v for k, v in params.items() if k in _REQUEST_FIELDS}
        if isinstance(fields.get("stop"), str):
            fields["stop"] = [fields["stop"]]
        return ChatRequest(model=resolved.model, messages=messages, extra=extra, **fields)

    async def chat(self, model: str, messages: list[Message], **params: Any) -> ChatResult:
        """A whole completion. `params` are `ChatRequest` fields (temperature, seed, …);
        unknown ones pass through to the provider as extra body fields."""
        resolved = self.resolve(model)
        request = self.request(model, messages, **params)
        started = time.perf_counter()
        cached = self.cache.get(self._cache_namespace(resolved), request) if self.cache else None
        if cached is not None:
            return self._result(cached, resolved, started, "hit")
        provider = self.provider(resolved.provider)
        retries = 0

        def count_retry(*_: object) -> None:
            nonlocal retries
            retries += 1

        response = await with_retries(
            lambda: provider.chat(request),
            self.retry_policy(resolved.provider),
            on_retry=count_retry,
        )
        response = self._with_usage(provider, request, response)
        if self.cache is not None:
            self.cache.put(self._cache_namespace(resolved), request, response)
        status: CacheStatus = "miss" if self.cache is not None else "off"
        return self._result(response, resolved, started, status, retries=retries)

    async def stream(
        self,
        model: str,
        messages: list[Message],
        *,
        into: StreamResult | None = None,
        **params: Any,
    ) -> AsyncIterator[ChatChunk]:
        """Chunks as they arrive. Pass ``into=StreamResult(...)`` (or read the result of
        `stream_result`) to get the `ChatResult` once the stream is exhausted. A cached
        response is replayed as a stream."""
        resolved = self.resolve(model)
        sink = into if into is not None else StreamResult(resolved)
        request = self.request(model, messages, **params)
        started = time.perf_counter()
        first: float | None = None
        cached = self.cache.get(self._cache_namespace(resolved), request) if self.cache else None
        if cached is not None:
            first = time.perf_counter() - started
            for piece in stream_pieces(cached.content or ""):
                sink.chunks.append(piece)
                yield ChatChunk(delta=piece, model=cached.model)
            yield ChatChunk(finish_reason=cached.finish_reason, usage=cached.usage)
            sink.result = self._result(cached, resolved, started, "hit", ttft=first)
            return
        provider = self.provider(resolved.provider)
        finish: ChatChunk | None = None
        usage: Usage | None = None
        tool_calls: dict[int, dict[str, Any]] = {}
        reported_model = resolved.model
        async for chunk in stream_with_retries(
            lambda: provider.stream(request), self.retry_policy(resolved.provider)
        ):
            if chunk.delta and first is None:
                first = time.perf_counter() - started
            if chunk.delta:
                sink.chunks.append(chunk.delta)
            for fragment in chunk.tool_calls or ():
                _merge_tool_call(tool_calls, fragment)
            if chunk.usage is not None:
                usage = chunk.usage
            if chunk.model:
                reported_model = chunk.model
            if chunk.finish_reason is not None:
                finish = chunk
            yield chunk
        response = ChatResponse(
            model=reported_model,
            content="".join(sink.chunks),
            finish_reason=finish.finish_reason if finish and finish.finish_reason else "stop",
            usage=usage or Usage(),
            tool_calls=[tool_calls[i] for i in sorted(tool_calls)] or None,
            provider=resolved.provider,
        )
        if usage is None:
            response = self._with_usage(provider, request, response, force=True)
        if self.cache is not None:
            self.cache.put(self._cache_namespace(resolved), request, response)
        status: CacheStatus = "miss" if self.cache is not None else "off"
        sink.result = self._result(response, resolved, started, status, ttft=first)

    async def embed(self, model: str, inputs: list[str]) -> EmbeddingResponse:
        resolved = self.resolve(model)
        provider = self.provider(resolved.provider)
        return await with_retries(
            lambda: provider.embed(resolved.model, inputs), self.retry_policy(resolved.provider)
        )

    def price(self, resolved: ResolvedModel) -> ModelPrice | None:
        """The price of a resolved model: overrides by instance, then by server, then
        the bundled table (None: unknown)."""
        return self.prices.lookup(
            resolved.provider_type,
            resolved.model,
            instance=resolved.provider,
            base_url=self._configs[resolved.provider].base_url,
        )

    def count_tokens(self, model: str, messages: list[Message]) -> TokenCount:
        resolved = self.resolve(model)
        return self.provider(resolved.provider).count_tokens(resolved.model, messages)

    def context_window(self, model: str) -> int | None:
        resolved = self.resolve(model)
        configured = self.prices.context_window(
            resolved.provider_type,
            resolved.model,
            instance=resolved.provider,
            base_url=self._configs[resolved.provider].base_url,
        )
        return configured or self.provider(resolved.provider).context_window(resolved.model)

    # -- lifecycle ------------------------------------------------------------------

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()
        if self._owns_store and self._store is not None:
            self._store.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- internals ------------------------------------------------------------------

    def _cache_namespace(self, resolved: ResolvedModel) -> str:
        """The provider part of a cache key: the instance and the server it points at, so
        re-pointing an entry at another server never serves the old server's answers."""
        base_url = self._configs[resolved.provider].base_url
        return f"{resolved.provider}@{base_url}" if base_url else resolved.provider

    def _with_usage(
        self,
        provider: Provider,
        request: ChatRequest,
        response: ChatResponse,
        *,
        force: bool = False,
    ) -> ChatResponse:
        """Fill in usage the provider did not report, marked as estimated when inexact."""
        if not force and response.usage.total_tokens > 0:
            return response
        # Counted by us, so never more than an estimate of what the provider billed.
        counted_in = provider.count_tokens(request.model, request.messages)
        counted_out = provider.count_tokens(
            request.model, [{"role": "assistant", "content": response.content or ""}]
        )
        usage = Usage(
            input_tokens=counted_in.tokens, output_tokens=counted_out.tokens, estimated=True
        )
        return replace(response, usage=usage)

    def _result(
        self,
        response: ChatResponse,
        resolved: ResolvedModel,
        started: float,
        cache: CacheStatus,
        *,
        ttft: float | None = None,
        retries: int = 0,
    ) -> ChatResult:
        price = self.price(resolved)
        return ChatResult(
            response=response,
            resolved=resolved,
            cost=cost(response.usage, price),
            latency_s=time.perf_counter() - started,
            cache=cache,
            time_to_first_token_s=ttft,
            retries=retries,
        )


def _merge_tool_call(calls: dict[int, dict[str, Any]], fragment: dict[str, Any]) -> None:
    """Fold one streamed tool-call fragment into the call at its ``index``: the first
    fragment carries id, type and name; later ones append to the arguments string."""
    index = int(fragment.get("index", len(calls)))
    call = calls.setdefault(index, {"id": None, "type": "function", "function": {}})
    call["id"] = call["id"] or fragment.get("id")
    call["type"] = fragment.get("type") or call["type"]
    function = fragment.get("function") or {}
    if function.get("name"):
        call["function"]["name"] = function["name"]
    if "arguments" in function:
        call["function"]["arguments"] = call["function"].get("arguments", "") + (
            function["arguments"] or ""
        )


def stream_pieces(text: str) -> list[str]:
    """Split a cached answer into word-sized stream pieces that join back exactly."""
    return re.findall(r"\s*\S+|\s+$", text)
