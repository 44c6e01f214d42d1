"""Routing: ordered fallbacks, retries, a circuit breaker per deployment, the `auto` route.

A *deployment* is one ``PROVIDER/MODEL``. A route (``routes:`` in lockgate.yaml) lists
deployments in fallback order; `Router.plan` turns the request's ``model`` into a
`RoutePlan`, and `Router.complete` / `Router.stream` walk it:

- each deployment gets ``1 + route.retries`` attempts, waiting between them as
  `RetryPolicy` says (exponential backoff with jitter, at least ``Retry-After``; a
  ``Retry-After`` beyond the provider's ``retry_max_delay`` moves on at once);
- `RateLimited`, `UpstreamError` (5xx, dropped connections), `Timeout` and
  `ContextWindowExceeded` move on to the next deployment once retries are used up
  (a context-window error is never retried: the same request cannot fit the second time,
  but the next deployment may have a larger window);
- anything else (`AuthError`, any other 4xx, a `ConfigError`) is raised at once: every
  deployment would refuse the same request, or the configuration must be fixed;
- a deployment whose breaker is open is skipped (logged as ``skipped: circuit open``);
- every attempt is logged (`Attempt`) for the trace; when all deployments fail, the last
  error is raised and the gateway maps it to 429/502/504.

Each attempt is bounded by the route's ``timeout_s``. Calls go through `Client`, so its
pricing and token counting apply; the gateway builds that client with ``max_retries=0``
so the route's retries are the only ones. Breakers: see `lockgate.gateway._breaker`.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lockgate.config import AutoRule, CircuitBreakerConfig, RouteConfig, Settings
from lockgate.errors import (
    ConfigError,
    ContextWindowExceeded,
    ProviderError,
    RateLimited,
    Timeout,
    UpstreamError,
)
from lockgate.gateway._breaker import CircuitBreaker, Clock, counts_against_deployment
from lockgate.providers._client import ChatResult, Client, StreamResult
from lockgate.providers._retry import RetryPolicy
from lockgate.providers._types import ChatChunk, Message, content_text

__all__ = [
    "Attempt",
    "CircuitBreaker",
    "RoutePlan",
    "RoutedResult",
    "RoutedStream",
    "Router",
    "counts_against_deployment",
]

Sleep = Callable[[float], Awaitable[None]]

_FALLBACK = (RateLimited, UpstreamError, Timeout, ContextWindowExceeded)
# Request fields that belong to the gateway's transport, not to the upstream call.
_NOT_FORWARDED = frozenset({"model", "messages", "stream", "stream_options"})
# Retries and timeout for a plain model (no route): the RouteConfig defaults.
_DEFAULT_ROUTE = RouteConfig.model_construct()


@dataclass(frozen=True)
class RoutePlan:
    """Where a request will go.

    Attributes:
        route: the route whose settings (retries, timeout) apply; None for a plain model.
        deployments: ``PROVIDER/MODEL`` in fallback order.
        decision: the `auto` rule's verdict (``auto_route``, ``verdict``, ``reason``,
            ``target``, ``input_tokens`` when counted); empty for other targets.
    """

    route: str | None
    deployments: list[str]
    decision: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Attempt:
    """One try (or skip) of one deployment, for the trace."""

    deployment: str
    outcome: Literal["ok", "error", "skipped"]
    error: str | None = None
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "outcome": self.outcome,
            "error": self.error,
            "elapsed_s": round(self.elapsed_s, 6),
        }


@dataclass(frozen=True)
class RoutedResult:
    """A completion and how it was obtained."""

    result: ChatResult
    deployment: str
    attempts: list[Attempt]
    plan: RoutePlan


@dataclass
class RoutedStream:
    """Filled in while `Router.stream` is consumed: the attempts so far, the deployment
    that is streaming, and (once exhausted) the `ChatResult`."""

    plan: RoutePlan
    attempts: list[Attempt] = field(default_factory=list)
    deployment: str | None = None
    result: ChatResult | None = None


# -- the router --------------------------------------------------------------------------


class Router:
    """Plans requests onto deployments and runs them with retries, fallbacks and breakers.

    Example:
        >>> router = Router(settings, client)
        >>> plan = router.plan("auto", messages, {"temperature": 0})
        >>> routed = await router.complete(plan, messages, {"temperature": 0})
        >>> routed.deployment, [a.outcome for a in routed.attempts]

    Args:
        settings: routes, and provider retry delays.
        client: makes the calls (response cache, pricing, token counting).
        breaker_clock: monotonic seconds for the circuit breakers (tests inject one).
        sleep: waits between retries (tests may record the delays).
        rand: uniform draws in [0, 1) for the retry jitter.
    """

    def __init__(
        self,
        settings: Settings,
        client: Client,
        *,
        breaker_clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.client = client
        self._sleep = sleep
        self._rand = rand
        self._clock = breaker_clock
        self._provider_configs = client.provider_configs()
        self._breakers: dict[CircuitBreakerConfig, CircuitBreaker] = {}
        # A deployment's health is one fact whichever route reaches it: its breaker uses
        # the settings of the first route (in file order) that lists it.
        self._breaker_of: dict[str, CircuitBreaker] = {}
        for route in settings.routes.values():
            for deployment in route.deployments:
                ref = client.resolve(deployment).ref
                if ref not in self._breaker_of:
                    self._breaker_of[ref] = self._breaker_for(route.circuit_breaker)
        self._keywords: dict[tuple[str, ...], re.Pattern[str]] = {}

    def breaker(self, deployment: str) -> CircuitBreaker:
        """The breaker that tracks `deployment` (``PROVIDER/MODEL``)."""
        found = self._breaker_of.get(deployment)
        if found is None:
            found = self._breaker_of[deployment] = self._breaker_for(CircuitBreakerConfig())
        return found

    def _breaker_for(self, config: CircuitBreakerConfig) -> CircuitBreaker:
        if config not in self._breakers:
            self._breakers[config] = CircuitBreaker(config, clock=self._clock)
        return self._breakers[config]

    # -- planning ----------------------------------------------------------------------

    def plan(
        self, model: str, messages: list[Message], params: Mapping[str, Any] | None = None
    ) -> RoutePlan:
        """Resolve `model` (a route, an `auto` route, an alias or ``PROVIDER/MODEL``).

        Raises:
            ConfigError: an unknown provider, a bad alias, or auto routes that loop.
        """
        return self._plan(model, messages, params or {}, ())

    def _plan(
        self,
        model: str,
        messages: list[Message],
        params: Mapping[str, Any],
        seen: tuple[str, ...],
    ) -> RoutePlan:
        route = self.settings.routes.get(model)
        if route is None:
            return RoutePlan(None, [self.client.resolve(model).ref])
        if route.auto is None:
            return RoutePlan(model, [self.client.resolve(d).ref for d in route.deployments])
        if model in seen:
            raise ConfigError(f"auto routes loop: {' → '.join([*seen, model])}")
        decision = self._judge(model, route.auto, messages, params)
        inner = self._plan(decision["target"], messages, params, (*seen, model))
        if inner.decision:
            decision["then"] = inner.decision
        return RoutePlan(inner.route, inner.deployments, decision)

    def _judge(
        self,
        name: str,
        rule: AutoRule,
        messages: list[Message],
        params: Mapping[str, Any],
    ) -> dict[str, Any]:
        """The auto rule, cheapest test first: tools/JSON schema, keywords, then length."""
        decision: dict[str, Any] = {"auto_route": name}
        reason: str | None = None
        response_format = params.get("response_format")
        if rule.tools_are_hard and params.get("tools"):
            reason = "tools requested"
        elif (
            rule.tools_are_hard
            and isinstance(response_format, Mapping)
            and response_format.get("type") == "json_schema"
        ):
            reason = "JSON schema requested"
        if reason is None and rule.hard_keywords:
            found = self._keyword_pattern(rule.hard_keywords).search(_last_user_text(messages))
            if found:
                reason = f"keyword '{found.group(0).lower()}' in the last user message"
        if reason is None:
            tokens, exact = self._count(rule.easy, messages)
            decision["input_tokens"] = tokens
            decision["tokens_exact"] = exact
            if tokens > rule.max_easy_tokens:
                reason = f"input of {tokens} tokens > max_easy_tokens {rule.max_easy_tokens}"
        hard = reason is not None
        decision["verdict"] = "hard" if hard else "easy"
        decision["reason"] = reason or (
            f"input within {rule.max_easy_tokens} tokens, no hard keyword, no tools"
        )
        decision["target"] = rule.hard if hard else rule.easy
        return decision

    def _keyword_pattern(self, keywords: Sequence[str]) -> re.Pattern[str]:
        # Whole words only, so "prove" does not fire on "improve".
        key = tuple(keywords)
        if key not in self._keywords:
            alternatives = "|".join(re.escape(k) for k in sorted(key, key=len, reverse=True))
            self._keywords[key] = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
        return self._keywords[key]

    def _count(self, target: str, messages: list[Message]) -> tuple[int, bool]:
        """Input tokens with the tokenizer of the easy target's first deployment."""
        route = self.settings.routes.get(target)
        model: str | None = target
        if route is not None:
            model = route.deployments[0] if route.deployments else None
        if model is not None:
            try:
                counted = self.client.count_tokens(model, messages)
            except (ConfigError, ProviderError):
                pass
            else:
                return counted.tokens, counted.exact
        # No tokenizer to hand: about four characters per token.
        chars = sum(len(content_text(m.get("content"))) for m in messages)
        return (chars + 3) // 4, False

    # -- calling ---------------------------------------------------------------------

    async def complete(
        self,
        plan: RoutePlan,
        messages: list[Message],
        params: Mapping[str, Any] | None = None,
        *,
        attempts: list[Attempt] | None = None,
    ) -> RoutedResult:
        """Run `plan`: retries per deployment, then fallback down the list.

        Args:
            attempts: a list to log attempts into; it holds them even when this raises.

        Raises:
            ProviderError: the last deployment's error when all failed (an `UpstreamError`
                with status 503 when every breaker was open), or at once for errors that
                no other deployment would answer differently (`AuthError`, other 4xx).
        """
        log = attempts if attempts is not None else []
        route = self._route(plan)
        call_params = _forwarded(params)
        last: ProviderError | None = None
        for deployment in plan.deployments:
            breaker = self.breaker(deployment)
            policy = self._policy(route, deployment)
            retry = 0
            while True:
                if not breaker.allow(deployment):
                    log.append(Attempt(deployment, "skipped", "circuit open"))
                    break
                started = time.perf_counter()
                try:
                    async with asyncio.timeout(route.timeout_s):
                        result = await self.client.chat(deployment, messages, **call_params)
                except TimeoutError:
                    error: ProviderError = _route_timeout(deployment, route)
                except ProviderError as exc:
                    error = exc
                else:
                    breaker.record(deployment, ok=True)
                    log.append(Attempt(deployment, "ok", None, time.perf_counter() - started))
                    return RoutedResult(result, deployment, log, plan)
                last = error
                wait = self._after_failure(log, breaker, deployment, error, started, policy, retry)
                if wait is None:
                    break
                await self._sleep(wait)
                retry += 1
        raise self._exhausted(plan, last, log)

    async def stream(
        self,
        plan: RoutePlan,
        messages: list[Message],
        params: Mapping[str, Any] | None = None,
        *,
        into: RoutedStream | None = None,
    ) -> AsyncIterator[ChatChunk]:
        """Stream `plan`'s answer, falling back only until the first chunk is yielded.

        After that, switching deployments would repeat or contradict what the client
        already has, so a failure propagates (as `UpstreamError` or `Timeout`; the
        gateway sends an SSE error event). The route's ``timeout_s`` bounds the wait for
        each chunk. Pass ``into=RoutedStream(plan)`` to read the attempts and, once the
        stream is exhausted, the `ChatResult`.
        """
        sink = into if into is not None else RoutedStream(plan)
        route = self._route(plan)
        call_params = _forwarded(params)
        last: ProviderError | None = None
        for deployment in plan.deployments:
            breaker = self.breaker(deployment)
            policy = self._policy(route, deployment)
            retry = 0
            while True:
                if not breaker.allow(deployment):
                    sink.attempts.append(Attempt(deployment, "skipped", "circuit open"))
                    break
                started = time.perf_counter()
                inner = StreamResult(self.client.resolve(deployment))
                chunks = self.client.stream(deployment, messages, into=inner, **call_params)
                delivered = False
                try:
                    while True:
                        try:
                            async with asyncio.timeout(route.timeout_s):
                                chunk = await anext(chunks)
                        except StopAsyncIteration:
                            break
                        if not delivered:
                            delivered = True
                            sink.deployment = deployment
                        yield chunk
                except TimeoutError:
                    error: ProviderError = _route_timeout(deployment, route)
                except ProviderError as exc:
                    error = exc
                else:
                    breaker.record(deployment, ok=True)
                    elapsed = time.perf_counter() - started
                    sink.attempts.append(Attempt(deployment, "ok", None, elapsed))
                    sink.deployment = deployment
                    sink.result = inner.result
                    return
                finally:
                    if isinstance(chunks, AsyncGenerator):
                        await chunks.aclose()
                last = error
                if delivered:
                    breaker.record(deployment, ok=not counts_against_deployment(error))
                    elapsed = time.perf_counter() - started
                    sink.attempts.append(Attempt(deployment, "error", _describe(error), elapsed))
                    raise error
                wait = self._after_failure(
                    sink.attempts, breaker, deployment, error, started, policy, retry
                )
                if wait is None:
                    break
                await self._sleep(wait)
                retry += 1
        raise self._exhausted(plan, last, sink.attempts)

    # -- internals ---------------------------------------------------------------------

    def _route(self, plan: RoutePlan) -> RouteConfig:
        if plan.route is None:
            return _DEFAULT_ROUTE
        return self.settings.routes[plan.route]

    def _policy(self, route: RouteConfig, deployment: str) -> RetryPolicy:
        config = self._provider_configs.get(deployment.partition("/")[0])
        if config is None:
            return RetryPolicy(max_retries=route.retries)
        return RetryPolicy(
            max_retries=route.retries,
            base_delay=config.retry_base_delay,
            max_delay=config.retry_max_delay,
        )

    def _after_failure(
        self,
        log: list[Attempt],
        breaker: CircuitBreaker,
        deployment: str,
        error: ProviderError,
        started: float,
        policy: RetryPolicy,
        retry: int,
    ) -> float | None:
        """Log and count a failed attempt; the wait before retrying this deployment, None
        to move on to the next one. Raises `error` when no fallback may help."""
        breaker.record(deployment, ok=not counts_against_deployment(error))
        log.append(Attempt(deployment, "error", _describe(error), time.perf_counter() - started))
        if not isinstance(error, _FALLBACK):
            error.add_note(_attempts_note(log))
            raise error
        return policy.delay(retry, error, self._rand())

    @staticmethod
    def _exhausted(
        plan: RoutePlan, last: ProviderError | None, log: list[Attempt]
    ) -> ProviderError:
        if last is None:
            last = UpstreamError(
                "no deployment available: the circuit is open for " + ", ".join(plan.deployments),
                status=503,
            )
        last.add_note(_attempts_note(log))
        return last


def _route_timeout(deployment: str, route: RouteConfig) -> Timeout:
    return Timeout(
        f"{deployment}: no answer within the route's timeout of {route.timeout_s:g}s",
        provider=deployment.partition("/")[0],
    )


def _describe(error: ProviderError) -> str:
    return f"{type(error).__name__}: {error}"


def _attempts_note(log: list[Attempt]) -> str:
    steps = "; ".join(
        f"{a.deployment} {a.outcome}" + (f" ({a.error})" if a.error else "") for a in log
    )
    return f"routing attempts: {steps}"


def _forwarded(params: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (params or {}).items() if k not in _NOT_FORWARDED}


def _last_user_text(messages: list[Message]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""
