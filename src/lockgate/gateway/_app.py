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
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response

from lockgate.config import Settings
from lockgate.errors import (
    ContextTooLarge,
    LockgateError,
)
from lockgate.gateway._budget import Budget
from lockgate.gateway._cache import ExactCache, RedisExactCache, TieredExactCache
from lockgate.gateway._call import Call
from lockgate.gateway._context import fit_messages
from lockgate.gateway._limits import MemoryLimiter, RedisLimiter
from lockgate.gateway._metrics import GatewayMetrics, watch_event_loop
from lockgate.gateway._openai_io import (
    DONE,
    ChatCall,
    EventStream,
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
from lockgate.gateway._sources import lay_sources
from lockgate.gateway._traces import TraceWriter
from lockgate.governance._tenants import KeyCache, TenantStore
from lockgate.providers import ChatResponse, Client
from lockgate.providers._client import stream_pieces
from lockgate.store import Store

if TYPE_CHECKING:
    from lockgate.gateway._semantic import SemanticCache

log = logging.getLogger("lockgate.gateway")

_JSON = "application/json"


def _return_freed_heap() -> None:
    """Give the heap pages freed while loading back to the OS (glibc's ``malloc_trim``;
    measured: 9 MB of RSS after the o200k vocabulary loads). A no-op elsewhere."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.malloc_trim(0)


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
        self.budget = Budget(self.limiter, self.client)
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
        # Starlette streams through anyio, which imports its asyncio backend on first use:
        # ~20 ms on the event loop inside the first streamed answer. Load it now.
        anyio.current_time()
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
        call = Call(trace_id=uuid.uuid4().hex, started=time.perf_counter())
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
            self._authenticate(request, Call(trace_id="-", started=0.0))
        except GatewayError as exc:
            return Response(exc.body(), status_code=exc.status, media_type=_JSON)
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "lockgate"}
            for name in [*sorted(self.settings.routes), *sorted(self.settings.aliases)]
        ]
        return Response(orjson.dumps({"object": "list", "data": data}), media_type=_JSON)

    async def embeddings(self, request: Request) -> Response:
        call = Call(trace_id=uuid.uuid4().hex, started=time.perf_counter(), endpoint="embeddings")
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
            return Response(orjson.dumps(body), media_type=_JSON, headers=call.headers())
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
        self, call: Call, parsed: ChatCall
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        target = self.resolver.resolve(parsed)
        call.target = target
        messages, params = target.messages, target.params
        deployment = target.deployment

        def count(conversation: list[dict[str, Any]]) -> int:
            return self.client.count_tokens(deployment, conversation).tokens

        window = self.client.context_window(deployment) or 0
        budget: int | None = None  # input tokens allowed (None: the window is unknown)
        if window:
            budget_route = self.settings.routes.get(target.plan.route or "")
            try:
                fitted = fit_messages(
                    messages,
                    count=count,
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
            messages, tokens, call.details["retrieval"] = lay_sources(
                messages,
                target.retrieval,
                target.sources,
                count=count,
                budget=budget,
                used_tokens=call.input_tokens or 0,
            )
            call.input_tokens = tokens if tokens is not None else call.input_tokens
        return messages, params

    async def _complete(self, request: Request, call: Call, parsed: ChatCall) -> Response:
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
                return self._answer(call, cached)
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
                    return self._answer(call, found[0])
        reservation = await self.budget.reserve(call, messages, params)
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
                await self.budget.release(reservation)
                span.record_error(exc)
                raise map_error(exc) from None
            except BaseException:  # a bug or a cancellation: the reservation is not spent
                self._detach(self.budget.release(reservation))
                raise
            finally:
                call.upstream_s = time.perf_counter() - begun
                self._note_attempts(call, attempts)
            result = routed.result
            call.result = result
            call.cache = "bypass" if bypass else "miss"
            span.record_response(model=result.response.model, usage=result.usage, cache=call.cache)
            span.record_output(result.response.content, result.response.finish_reason)
        await self.budget.settle(reservation, result)
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
        return self._answer(call, result.response)

    def _semantic_route(self, target: Target, bypass: bool) -> tuple[str, float] | None:
        """(route, threshold) when the route opted into the semantic cache."""
        route = self.settings.routes.get(target.plan.route or "")
        if bypass or route is None or not route.semantic_cache:
            return None
        return target.plan.route or "", route.semantic_threshold

    def _span_attributes(self, call: Call) -> dict[str, Any]:
        target = call.target
        assert target is not None
        first = target.deployment
        return request_attributes(
            operation="chat",
            provider=self.client.resolve(first).provider_type,
            request_model=target.requested,
            tenant=call.tenant,
            route=target.plan.route,
        )

    def _note_attempts(self, call: Call, attempts: list[Any]) -> None:
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

    async def _stream(self, request: Request, call: Call, parsed: ChatCall) -> Response:
        messages, params = await self._prepare(call, parsed)
        target = call.target
        assert target is not None
        bypass = wants_bypass(request)
        cache_key_body = {"model": target.model, "messages": messages, **params}
        cached = None if bypass else await self.exact_cache.get(call.tenant or "", cache_key_body)
        reservation = None
        if cached is None:
            reservation = await self.budget.reserve(call, messages, params)
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
                        await self.budget.settle(reservation, sink.result)
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
                    await self.budget.release(reservation)
                    reservation = None
                yield error_event(error)
            finally:
                if reservation is not None:  # the client left before the answer was settled
                    call.status, call.error = 499, "the client closed the connection mid-stream"
                    # Not awaited here: this code runs inside a cancelled scope, where
                    # every await is cancelled again.
                    self._detach(self.budget.settle_abandoned(call, reservation))
                self._finish(call)

        return EventStream(events(), media_type="text/event-stream", headers=call.headers())

    async def _relay(
        self,
        call: Call,
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

    def _detach(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in a task of its own, outside any cancellation of the caller; the
        gateway keeps a reference until it finishes and waits for it when stopping."""
        task = asyncio.get_running_loop().create_task(work)
        self._detached.add(task)
        task.add_done_callback(self._detached.discard)

    # -- helpers -------------------------------------------------------------------------

    def _authenticate(self, request: Request, call: Call) -> None:
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

    def _answer(self, call: Call, response: ChatResponse) -> Response:
        data = response.to_openai()
        data["id"] = f"chatcmpl-{call.trace_id}"
        if call.target is not None:
            data["model"] = call.target.requested
        self._finish(call)
        return Response(orjson.dumps(data), media_type=_JSON, headers=call.headers())

    def _fail(self, call: Call, error: GatewayError) -> Response:
        call.status, call.error = error.status, error.message
        self._finish(call)
        headers = {**error.headers(), "x-lockgate-trace-id": call.trace_id}
        return Response(error.body(), status_code=error.status, media_type=_JSON, headers=headers)

    def _finish(self, call: Call) -> None:
        elapsed = time.perf_counter() - call.started
        record = call.trace_record(elapsed)
        self.traces.submit(record)
        target, usage = call.target, call.usage
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
