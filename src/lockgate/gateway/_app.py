"""The gateway: endpoints, the per-request flow, headers and traces (`Gateway`).

Per request, on the hot path: key lookup in memory, body parse (orjson), target
resolution (routes and prompts cached in memory), context trimming, a limit reservation
(memory or Redis), the exact/semantic cache, the upstream call through the router, the
settlement, and a trace handed to the batch writer. Nothing on this path reads the
database; writes happen in the trace writer's background task.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from lockgate.accounting import cost
from lockgate.config import Settings
from lockgate.errors import (
    ContextTooLarge,
    LimitExceeded,
    LockgateError,
)
from lockgate.gateway._cache import ExactCache, RedisExactCache, TieredExactCache
from lockgate.gateway._context import fit_chunks, fit_messages
from lockgate.gateway._limits import LimitScope, MemoryLimiter, RedisLimiter
from lockgate.gateway._metrics import GatewayMetrics, watch_event_loop
from lockgate.gateway._openai_io import (
    DONE,
    ChatCall,
    GatewayError,
    chunk,
    error_event,
    map_error,
    now,
    parse_chat,
    parse_json,
    usage_chunk,
    wants_bypass,
)
from lockgate.gateway._otel import Tracing, request_attributes
from lockgate.gateway._resolve import Target, TargetResolver
from lockgate.gateway._routing import RoutedStream, Router
from lockgate.gateway._sources import Document, source_line, sources_message
from lockgate.gateway._traces import TraceRecord, TraceWriter
from lockgate.governance._tenants import KeyCache, TenantStore
from lockgate.providers import ChatResponse, ChatResult, Client, Usage
from lockgate.providers._client import stream_pieces
from lockgate.store import Store

if TYPE_CHECKING:
    from lockgate.gateway._semantic import SemanticCache

log = logging.getLogger("lockgate.gateway")

_JSON = "application/json"
# The sources message's heading and each chunk's separator and number, with margin.
_SOURCES_HEADER_TOKENS = 32


class _EventStream(StreamingResponse):
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


def _return_freed_heap() -> None:
    """Give the heap pages freed while loading back to the OS (glibc's ``malloc_trim``;
    measured: 9 MB of RSS after the o200k vocabulary loads). A no-op elsewhere."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.malloc_trim(0)


@dataclass
class _Call:
    """Everything known about one request, filled in as it goes; becomes its trace."""

    trace_id: str
    started: float
    endpoint: str = "chat.completions"
    tenant: str | None = None
    key_id: str | None = None
    target: Target | None = None
    status: int = 200
    error: str | None = None
    upstream_s: float = 0.0
    result: ChatResult | None = None
    cache: str | None = None
    ttft_s: float | None = None
    stream: bool = False
    user: str | None = None
    tenant_limits: Any = None
    key_limits: Any = None
    input_tokens: int | None = None  # counted once while fitting, reused for the reservation
    relayed_chars: int = 0  # streamed answer text sent to the client so far
    details: dict[str, Any] = field(default_factory=dict)


class Gateway:
    """The gateway's long-lived parts, owned by one app."""

    def __init__(self, settings: Settings, *, store: Store | None = None) -> None:
        self.settings = settings
        self._owns_store = store is None
        self.store = store or Store.open(settings)
        config = settings.gateway
        # The gateway keeps its own in-memory response cache; the DB-backed one is for evals.
        # The router retries and falls back itself, so the client must not retry again.
        self.client = Client(settings, store=self.store, cache_mode="off", max_retries=0)
        self.tenants = TenantStore(self.store, actor="gateway")
        self.keys = KeyCache(self.tenants, poll_s=config.config_poll_s)
        self.limiter = RedisLimiter(settings.redis_url) if settings.redis_url else MemoryLimiter()
        self.metrics = GatewayMetrics()
        # Spills to HOME/trace-spill when the queue is full or the database is down.
        self.traces = TraceWriter.from_settings(
            self.store, settings, on_drop=self.metrics.trace_dropped
        )
        self.router = Router(settings, self.client)
        shared = (
            RedisExactCache(settings.redis_url, ttl_s=config.cache_ttl_s)
            if settings.redis_url
            else None
        )
        self.exact_cache = TieredExactCache(ExactCache(ttl_s=config.cache_ttl_s), shared)
        self.semantic_cache: SemanticCache | None = None
        if any(route.semantic_cache for route in settings.routes.values()):
            # numpy (20 MB of RSS) loads only for a gateway with a semantic route.
            from lockgate.gateway._semantic import SemanticCache

            self.semantic_cache = SemanticCache(self.client, ttl_s=config.cache_ttl_s)
        self.resolver = TargetResolver(settings, self.store, self.router)
        self.tracing = Tracing.from_settings(settings)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._detached: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await asyncio.to_thread(self.keys.refresh)
        await asyncio.to_thread(self._warm)
        await self.traces.start()
        self._stop.clear()
        self._tasks = [
            asyncio.create_task(self.keys.run(self._stop)),
            asyncio.create_task(watch_event_loop(self.metrics, self._stop)),
        ]

    def _warm(self) -> None:
        """Load every configured deployment's tokenizer, window and price now, before
        ``/readyz`` answers, not inside its first request: there it runs on the event loop
        and stalls every request in flight (measured: 600 ms for gpt-4o-mini's tokenizer
        and the price table; a local model's load takes seconds)."""
        refs = {d for route in self.settings.routes.values() for d in route.deployments}
        refs.update(self.settings.aliases)
        probe: list[dict[str, Any]] = [{"role": "user", "content": "warm-up"}]
        for ref in sorted(refs):
            try:
                self.client.count_tokens(ref, probe)
                self.client.context_window(ref)
                self.client.price(self.client.resolve(ref))
            except LockgateError as exc:  # the request that uses it will say what is wrong
                log.warning("could not prepare %s at start: %s", ref, exc)
        _return_freed_heap()

    async def stop(self) -> None:
        """Drain: every trace accepted before shutdown is written."""
        self._stop.set()
        for task in [*self._tasks, *self._detached]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.traces.stop()
        await self.exact_cache.aclose()
        await self.limiter.close()
        await self.client.aclose()
        self.tracing.shutdown()
        if self._owns_store:
            self.store.close()

    # -- endpoints -------------------------------------------------------------------

    async def chat_completions(self, request: Request) -> Response:
        call = _Call(trace_id=uuid.uuid4().hex, started=time.perf_counter())
        try:
            self._authenticate(request, call)
            body = await self._body(request)
            parsed = parse_chat(body)
            call.stream, call.user = parsed.stream, parsed.params.get("user")
            if parsed.stream:
                return await self._stream(request, call, parsed)
            return await self._complete(request, call, parsed)
        except GatewayError as exc:
            return self._fail(call, exc)
        except Exception as exc:  # a bug must still produce an answer and a trace
            log.exception("unexpected error in chat completions")
            return self._fail(
                call,
                GatewayError(500, f"internal error: {type(exc).__name__}", kind="server_error"),
            )

    async def models(self, request: Request) -> Response:
        try:
            self._authenticate(request, _Call(trace_id="-", started=0.0))
        except GatewayError as exc:
            return Response(exc.body(), status_code=exc.status, media_type=_JSON)
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "lockgate"}
            for name in [*sorted(self.settings.routes), *sorted(self.settings.aliases)]
        ]
        return Response(orjson.dumps({"object": "list", "data": data}), media_type=_JSON)

    async def embeddings(self, request: Request) -> Response:
        call = _Call(trace_id=uuid.uuid4().hex, started=time.perf_counter(), endpoint="embeddings")
        try:
            self._authenticate(request, call)
            data = parse_json(await self._body(request))
            model, inputs = data.get("model"), data.get("input")
            if not isinstance(model, str):
                raise GatewayError(400, "'model' is required", param="model")
            if isinstance(inputs, str):
                inputs = [inputs]
            if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
                raise GatewayError(
                    400, "'input' must be a string or a list of strings", param="input"
                )
            begun = time.perf_counter()
            result = await self.client.embed(model, inputs)
            call.upstream_s = time.perf_counter() - begun
            body = {
                "object": "list",
                "model": result.model,
                "data": [
                    {"object": "embedding", "index": i, "embedding": vector}
                    for i, vector in enumerate(result.vectors)
                ],
                "usage": {
                    "prompt_tokens": result.usage.input_tokens,
                    "total_tokens": result.usage.input_tokens,
                },
            }
            self._finish(call)
            return Response(orjson.dumps(body), media_type=_JSON, headers=self._headers(call))
        except GatewayError as exc:
            return self._fail(call, exc)
        except LockgateError as exc:
            return self._fail(call, map_error(exc))

    async def healthz(self, request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type=_JSON)

    async def readyz(self, request: Request) -> Response:
        try:
            await asyncio.to_thread(self.tenants.config_version)
        except LockgateError as exc:
            return Response(
                orjson.dumps({"status": "unavailable", "reason": str(exc)}), 503, media_type=_JSON
            )
        return Response(b'{"status":"ready"}', media_type=_JSON)

    async def prometheus(self, request: Request) -> Response:
        body, content_type = self.metrics.render()
        return Response(body, media_type=content_type)

    # -- the chat path -----------------------------------------------------------------

    async def _prepare(
        self, call: _Call, parsed: ChatCall
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        target = self.resolver.resolve(parsed)
        call.target = target
        messages, params = target.messages, target.params
        deployment = target.plan.deployments[0] if target.plan.deployments else target.model
        window = self.client.context_window(deployment) or 0
        budget: int | None = None  # input tokens allowed (None: the window is unknown)
        if window:
            budget_route = self.settings.routes.get(target.plan.route or "")
            try:
                fitted = fit_messages(
                    messages,
                    count=lambda msgs: self.client.count_tokens(deployment, msgs).tokens,
                    window=window,
                    max_tokens=int(params.get("max_tokens") or min(1024, window // 4)),
                    input_budget=budget_route.input_token_budget if budget_route else None,
                )
            except ContextTooLarge as exc:
                raise GatewayError(
                    400, str(exc), param="messages", code="context_length_exceeded"
                ) from None
            if fitted.dropped:
                call.details["trimmed"] = {
                    "dropped": fitted.dropped,
                    "tokens_before": fitted.tokens_before,
                    "tokens_after": fitted.tokens_after,
                }
            messages = fitted.messages
            call.input_tokens = fitted.tokens_after
            budget = fitted.budget
        if target.retrieval is not None:
            messages = self._add_sources(call, target, messages, deployment, budget)
        return messages, params

    def _add_sources(
        self,
        call: _Call,
        target: Target,
        messages: list[dict[str, Any]],
        deployment: str,
        budget: int | None,
    ) -> list[dict[str, Any]]:
        """The prompt's retrieved sources laid into `messages`, keeping the whole within
        `budget` input tokens (None: the window is unknown, nothing is dropped)."""
        retrieval, selection = target.retrieval, target.sources
        assert retrieval is not None
        details: dict[str, Any] = {"index": retrieval.index, "top_k": retrieval.top_k}
        call.details["retrieval"] = details
        if selection is None:
            details["offered"] = 0
            details["note"] = "no documents in the request; lockgate has no index to search"
            return messages

        def count(conversation: list[dict[str, Any]]) -> int:
            return self.client.count_tokens(deployment, conversation).tokens

        def laid_out(documents: list[Document]) -> list[dict[str, Any]]:
            if not documents:
                return messages
            head = 0
            while head < len(messages) and messages[head].get("role") == "system":
                head += 1
            sources = sources_message(retrieval.index, documents)
            return [*messages[:head], sources, *messages[head:]]

        kept = selection.kept
        if budget is not None:
            # Each source counted as laid out, label included; rank stands in for score.
            room = budget - (call.input_tokens or 0) - _SOURCES_HEADER_TOKENS
            lines = [(source_line(rank + 1, d), -float(rank)) for rank, d in enumerate(kept)]
            chosen = fit_chunks(
                lines,
                count_text=lambda text: count([{"role": "system", "content": text}]),
                budget=max(0, room),
            )
            kept = [kept[i] for i in chosen]
        with_sources = laid_out(kept)
        tokens = count(with_sources)
        while budget is not None and kept and tokens > budget:  # estimates ran short
            kept = kept[:-1]
            with_sources = laid_out(kept)
            tokens = count(with_sources)
        call.input_tokens = tokens
        details.update(
            offered=selection.offered,
            used=len(kept),
            below_min_score=selection.below_min_score,
            beyond_top_k=selection.beyond_top_k,
            over_budget=len(selection.kept) - len(kept),
            ids=[d.id for d in kept if d.id is not None],
        )
        return with_sources

    async def _complete(self, request: Request, call: _Call, parsed: ChatCall) -> Response:
        messages, params = await self._prepare(call, parsed)
        target = call.target
        assert target is not None
        bypass = wants_bypass(request)
        cache_key_body = {"model": target.model, "messages": messages, **params}
        semantic = self._semantic_route(target, bypass)
        semantic_key = None
        if not bypass:
            cached = await self.exact_cache.get(call.tenant or "", cache_key_body)
            if cached is not None:
                call.cache = "hit"
                return self._answer(call, cached, None)
            if semantic is not None:
                assert self.semantic_cache is not None
                semantic_key = await self.semantic_cache.key(messages, params)
                found = await self.semantic_cache.get(
                    call.tenant or "",
                    semantic[0],
                    messages,
                    semantic[1],
                    params=params,
                    key=semantic_key,
                )
                if found is not None:
                    call.cache = "semantic"
                    call.details["semantic_similarity"] = round(found[1], 4)
                    return self._answer(call, found[0], None)
        reservation = await self._reserve(call, target.model, messages, params)
        begun = time.perf_counter()
        attempts: list[Any] = []
        if target.plan.decision:
            call.details["route_decision"] = target.plan.decision
        with self.tracing.span(f"chat {target.requested}", self._span_attributes(call)) as span:
            span.record_input(messages)
            try:
                routed = await self.router.complete(
                    target.plan, messages, params, attempts=attempts
                )
            except LockgateError as exc:
                await self.limiter.release(reservation)
                span.record_error(exc)
                raise map_error(exc) from None
            except BaseException:  # a bug or a cancellation: the reservation is not spent
                self._detach(self.limiter.release(reservation))
                raise
            finally:
                call.upstream_s = time.perf_counter() - begun
                self._note_attempts(call, attempts)
            result = routed.result
            call.result = result
            call.cache = "bypass" if bypass else "miss"
            span.record_response(model=result.response.model, usage=result.usage, cache=call.cache)
            span.record_output(result.response.content, result.response.finish_reason)
        await self.limiter.settle(
            reservation, tokens=result.usage.total_tokens, usd=result.cost.usd
        )
        if not bypass:
            await self.exact_cache.put(call.tenant or "", cache_key_body, result.response)
            if semantic is not None and semantic_key is not None:
                assert self.semantic_cache is not None
                await self.semantic_cache.put(
                    call.tenant or "",
                    semantic[0],
                    messages,
                    result.response,
                    params=params,
                    key=semantic_key,
                )
        return self._answer(call, result.response, result)

    def _semantic_route(self, target: Target, bypass: bool) -> tuple[str, float] | None:
        """(route, threshold) when the route opted into the semantic cache."""
        route = self.settings.routes.get(target.plan.route or "")
        if bypass or route is None or not route.semantic_cache:
            return None
        return target.plan.route or "", route.semantic_threshold

    def _span_attributes(self, call: _Call) -> dict[str, Any]:
        target = call.target
        assert target is not None
        first = target.plan.deployments[0] if target.plan.deployments else target.model
        return request_attributes(
            operation="chat",
            provider=self.client.resolve(first).provider_type,
            request_model=target.requested,
            tenant=call.tenant,
            route=target.plan.route,
        )

    def _note_attempts(self, call: _Call, attempts: list[Any]) -> None:
        """Attempts go to the trace; failures and breaker states to the metrics."""
        call.details["attempts"] = [a.to_dict() for a in attempts]
        for attempt in attempts:
            if attempt.outcome == "error":
                kind = (attempt.error or "error").split(":", 1)[0][:40]
                self.metrics.observe_upstream_error(attempt.deployment, kind)
            self.metrics.set_circuit_open(
                attempt.deployment,
                self.router.breaker(attempt.deployment).state(attempt.deployment) == "open",
            )

    async def _stream(self, request: Request, call: _Call, parsed: ChatCall) -> Response:
        messages, params = await self._prepare(call, parsed)
        target = call.target
        assert target is not None
        bypass = wants_bypass(request)
        cache_key_body = {"model": target.model, "messages": messages, **params}
        cached = None if bypass else await self.exact_cache.get(call.tenant or "", cache_key_body)
        reservation = None
        if cached is None:
            reservation = await self._reserve(call, target.model, messages, params)
        call.cache = "hit" if cached is not None else ("bypass" if bypass else "miss")
        response_id = f"chatcmpl-{call.trace_id}"
        created = now()
        model_name = target.requested

        async def events() -> AsyncIterator[bytes]:
            nonlocal reservation
            yield chunk(
                response_id, model_name, created, delta={"role": "assistant", "content": ""}
            )
            final: ChatResponse | None = cached
            try:
                if cached is not None:
                    for piece in stream_pieces(cached.content or ""):
                        if call.ttft_s is None:
                            call.ttft_s = time.perf_counter() - call.started
                        yield chunk(response_id, model_name, created, delta={"content": piece})
                else:
                    sink = RoutedStream(target.plan)
                    head = (response_id, model_name, created)
                    relay = self._relay(call, target, messages, params, sink, head)
                    async with contextlib.aclosing(relay):
                        async for data in relay:
                            yield data
                    assert sink.result is not None
                    call.result = sink.result
                    final = sink.result.response
                    if reservation is not None:
                        await self.limiter.settle(
                            reservation, tokens=final.usage.total_tokens, usd=sink.result.cost.usd
                        )
                        reservation = None
                    if not bypass:
                        await self.exact_cache.put(call.tenant or "", cache_key_body, final)
                assert final is not None
                yield chunk(response_id, model_name, created, finish_reason=final.finish_reason)
                if parsed.include_usage:
                    yield usage_chunk(response_id, model_name, created, final)
                yield DONE
            except Exception as exc:
                if isinstance(exc, LockgateError):
                    error = map_error(exc)
                else:  # a bug must still end the stream properly and leave a trace
                    log.exception("unexpected error in a streamed answer")
                    error = GatewayError(
                        500, f"internal error: {type(exc).__name__}", kind="server_error"
                    )
                call.status, call.error = error.status, error.message
                if reservation is not None:
                    await self.limiter.release(reservation)
                    reservation = None
                yield error_event(error)
            finally:
                if reservation is not None:  # the client left before the answer was settled
                    call.status, call.error = 499, "the client closed the connection mid-stream"
                    # Not awaited here: this code runs inside a cancelled scope, where
                    # every await is cancelled again.
                    self._detach(self._settle_abandoned(call, reservation))
                self._finish(call)

        return _EventStream(events(), media_type="text/event-stream", headers=self._headers(call))

    async def _relay(
        self,
        call: _Call,
        target: Target,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        sink: RoutedStream,
        head: tuple[str, str, int],
    ) -> AsyncGenerator[bytes, None]:
        """The upstream's streamed parts as the client's SSE chunks, inside the request's
        span; the routed result is left in `sink`."""
        response_id, model_name, created = head
        if target.plan.decision:
            call.details["route_decision"] = target.plan.decision
        attributes = self._span_attributes(call)
        with self.tracing.span(f"chat {target.requested}", attributes, current=False) as span:
            span.record_input(messages)
            begun = time.perf_counter()
            try:
                async for part in self.router.stream(target.plan, messages, params, into=sink):
                    if part.delta:
                        call.relayed_chars += len(part.delta)
                        if call.ttft_s is None:
                            call.ttft_s = time.perf_counter() - call.started
                        yield chunk(response_id, model_name, created, delta={"content": part.delta})
                    if part.tool_calls:
                        yield chunk(
                            response_id, model_name, created, delta={"tool_calls": part.tool_calls}
                        )
            finally:
                call.upstream_s = time.perf_counter() - begun
                self._note_attempts(call, sink.attempts)
            assert sink.result is not None
            response = sink.result.response
            span.record_response(model=response.model, usage=response.usage, cache=call.cache)
            span.record_output(response.content, response.finish_reason)

    async def _reserve(
        self, call: _Call, model: str, messages: list[dict[str, Any]], params: dict[str, Any]
    ) -> Any:
        scopes = [
            LimitScope(f"key:{call.key_id}", call.key_limits),
            LimitScope(f"tenant:{call.tenant}", call.tenant_limits),
        ]
        deployment = (
            call.target.plan.deployments[0]
            if call.target and call.target.plan.deployments
            else model
        )
        input_tokens = call.input_tokens
        if input_tokens is None:
            input_tokens = call.input_tokens = self.client.count_tokens(deployment, messages).tokens
        max_out = int(params.get("max_tokens") or 1024)
        usd = self._estimated_usd(deployment, input_tokens, max_out)
        try:
            return await self.limiter.acquire(scopes, tokens=input_tokens + max_out, usd=usd)
        except LimitExceeded as exc:
            raise GatewayError(
                429,
                str(exc),
                kind="rate_limit_exceeded",
                code=exc.limit,
                retry_after=exc.retry_after,
            ) from None

    def _detach(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in a task of its own, outside any cancellation of the caller; the
        gateway keeps a reference until it finishes and waits for it when stopping."""
        task = asyncio.get_running_loop().create_task(work)
        self._detached.add(task)
        task.add_done_callback(self._detached.discard)

    def _estimated_usd(self, deployment: str, input_tokens: int, output_tokens: int) -> Any:
        estimate = Usage(input_tokens=input_tokens, output_tokens=output_tokens, estimated=True)
        return cost(estimate, self.client.price(self.client.resolve(deployment))).usd

    async def _settle_abandoned(self, call: _Call, reservation: Any) -> None:
        """Settle a stream the client left: the input, and the output relayed so far at
        about four characters a token (the upstream's usage never arrived)."""
        target = call.target
        assert target is not None
        deployment = target.plan.deployments[0] if target.plan.deployments else target.model
        input_tokens = call.input_tokens or 0
        output_tokens = -(-call.relayed_chars // 4)
        usd = self._estimated_usd(deployment, input_tokens, output_tokens)
        await self.limiter.settle(reservation, tokens=input_tokens + output_tokens, usd=usd)

    # -- helpers -------------------------------------------------------------------------

    def _authenticate(self, request: Request, call: _Call) -> None:
        header = request.headers.get("authorization", "")
        secret = (
            header[7:].strip()
            if header[:7].lower() == "bearer "
            else request.headers.get("x-api-key", "")
        )
        if not secret:
            raise GatewayError(
                401,
                "missing API key: send 'Authorization: Bearer <key>'",
                kind="authentication_error",
                code="missing_api_key",
            )
        found = self.keys.lookup(secret)
        if found is None:
            raise GatewayError(
                401,
                "invalid or revoked API key",
                kind="authentication_error",
                code="invalid_api_key",
            )
        key, tenant = found
        call.tenant, call.key_id = tenant.name, key.id
        call.tenant_limits, call.key_limits = tenant.limits, key.limits

    async def _body(self, request: Request) -> bytes:
        limit = self.settings.gateway.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise GatewayError(413, f"request body over {limit:,} bytes", code="request_too_large")
        body = b""
        async for part in request.stream():
            body += part
            if len(body) > limit:
                raise GatewayError(
                    413, f"request body over {limit:,} bytes", code="request_too_large"
                )
        return body

    def _answer(self, call: _Call, response: ChatResponse, result: ChatResult | None) -> Response:
        data = response.to_openai()
        data["id"] = f"chatcmpl-{call.trace_id}"
        if call.target is not None:
            data["model"] = call.target.requested
        self._finish(call)
        return Response(orjson.dumps(data), media_type=_JSON, headers=self._headers(call))

    def _headers(self, call: _Call) -> dict[str, str]:
        headers = {"x-lockgate-trace-id": call.trace_id}
        if call.cache:
            headers["x-lockgate-cache"] = call.cache
        if call.result is not None and call.result.cost.usd is not None:
            headers["x-lockgate-cost-usd"] = f"{call.result.cost.usd:f}"
        elif call.cache == "hit":
            headers["x-lockgate-cost-usd"] = "0"
        overhead = (time.perf_counter() - call.started - call.upstream_s) * 1000
        headers["x-lockgate-overhead-ms"] = f"{overhead:.3f}"
        return headers

    def _fail(self, call: _Call, error: GatewayError) -> Response:
        call.status, call.error = error.status, error.message
        self._finish(call)
        headers = {**error.headers(), "x-lockgate-trace-id": call.trace_id}
        return Response(error.body(), status_code=error.status, media_type=_JSON, headers=headers)

    def _finish(self, call: _Call) -> None:
        elapsed = time.perf_counter() - call.started
        result = call.result
        usage = result.usage if result is not None else Usage()
        target = call.target
        record = TraceRecord(
            id=call.trace_id,
            at=datetime.now(UTC),
            tenant=call.tenant,
            key_id=call.key_id,
            endpoint=call.endpoint,
            route=target.plan.route if target else None,
            prompt_ref=target.prompt_ref if target else None,
            requested_model=target.requested if target else None,
            resolved_model=result.resolved.ref if result is not None else None,
            status=call.status,
            error=call.error,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_tokens=usage.cached_input_tokens,
            tokens_estimated=usage.estimated,
            cost_usd=result.cost.usd
            if result is not None
            else (Decimal(0) if call.cache == "hit" else None),
            latency_ms=elapsed * 1000,
            ttft_ms=call.ttft_s * 1000 if call.ttft_s is not None else None,
            overhead_ms=(elapsed - call.upstream_s) * 1000,
            cache=call.cache,
            stream=call.stream,
            user=call.user,
            details=call.details,
        )
        self.traces.submit(record)
        self.metrics.observe_request(
            route=(target.plan.route or "direct") if target else "none",
            status=call.status,
            model=record.resolved_model or "none",
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=record.cost_usd,
            duration_s=elapsed,
            overhead_s=elapsed - call.upstream_s,
            cache=call.cache,
            ttft_s=call.ttft_s,
        )
