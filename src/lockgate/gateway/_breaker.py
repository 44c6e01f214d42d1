"""Circuit breakers: one per deployment, shared by every route that reaches it.

closed → open after ``failures`` consecutive failures, or when the failure share over
``window_s`` reaches ``failure_ratio`` with at least ``min_requests`` calls; open →
half-open after ``cooldown_s`` (one probe at a time); the probe's outcome closes or
re-opens it. Only evidence of an unhealthy deployment counts: `RateLimited`, `Timeout`
and `UpstreamError` (5xx, dropped streams, connection failures). An `AuthError`, a
`ContextWindowExceeded` or any other 4xx means the server is up and answering, so one
user's oversized prompt cannot take a deployment out of rotation for everyone.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from lockgate.config import CircuitBreakerConfig
from lockgate.errors import RateLimited, Timeout, UpstreamError

__all__ = ["BreakerState", "CircuitBreaker", "Clock", "counts_against_deployment"]

Clock = Callable[[], float]
BreakerState = Literal["closed", "open", "half-open"]

_UNHEALTHY = (RateLimited, Timeout, UpstreamError)
_BUCKETS = 20


def counts_against_deployment(error: BaseException) -> bool:
    """Whether `error` is evidence that the deployment is unhealthy (see module docs)."""
    return isinstance(error, _UNHEALTHY)


# -- circuit breaker ---------------------------------------------------------------------


@dataclass
class _Health:
    state: BreakerState = "closed"
    consecutive: int = 0
    # (bucket start, calls, failures) for the failure-ratio window, oldest first.
    buckets: deque[list[float]] = field(default_factory=deque)
    opened_at: float = 0.0
    probe_at: float | None = None


class CircuitBreaker:
    """Per-deployment breakers sharing one `CircuitBreakerConfig`.

    closed → open after ``failures`` consecutive failures, or when at least
    ``min_requests`` calls within the last ``window_s`` seconds failed at a share of
    ``failure_ratio`` or more. open → half-open once ``cooldown_s`` has passed: `allow`
    then admits exactly one probe; its success closes the breaker, its failure re-opens it
    for another cool-down. A probe that never reports (its caller was cancelled) is
    replaced by a new one after a further ``cooldown_s``.

    The ratio window is kept in ``window_s / 20`` buckets, so memory stays constant
    whatever the request rate.

    Example:
        >>> breaker = CircuitBreaker(CircuitBreakerConfig(failures=2))
        >>> breaker.record("openai/gpt-4o", ok=False)
        >>> breaker.record("openai/gpt-4o", ok=False)
        >>> breaker.allow("openai/gpt-4o"), breaker.state("openai/gpt-4o")
        (False, 'open')
    """

    def __init__(self, config: CircuitBreakerConfig, *, clock: Clock = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._health: dict[str, _Health] = {}
        self._bucket_s = config.window_s / _BUCKETS

    def allow(self, deployment: str) -> bool:
        """Whether a call to `deployment` may go ahead now (admitting a half-open probe
        counts: the caller must `record` its outcome)."""
        health = self._health.get(deployment)
        if health is None or health.state == "closed":
            return True
        now = self._clock()
        cooldown = self.config.cooldown_s
        if health.state == "open":
            if now - health.opened_at < cooldown:
                return False
            health.state = "half-open"
        elif health.probe_at is not None and now - health.probe_at < cooldown:
            return False
        health.probe_at = now
        return True

    def record(self, deployment: str, ok: bool) -> None:
        """Report the outcome of a call that `allow` admitted."""
        health = self._health.setdefault(deployment, _Health())
        now = self._clock()
        if health.state == "half-open":
            if ok:
                self._health[deployment] = _Health()
            else:
                self._open(health, now)
            return
        if health.state == "open":
            return  # a call admitted before the breaker opened; the verdict stands
        self._count(health, now, ok)
        if ok:
            health.consecutive = 0
            return
        health.consecutive += 1
        calls = sum(int(b[1]) for b in health.buckets)
        failed = sum(int(b[2]) for b in health.buckets)
        if health.consecutive >= self.config.failures or (
            calls >= self.config.min_requests and failed / calls >= self.config.failure_ratio
        ):
            self._open(health, now)

    def state(self, deployment: str) -> BreakerState:
        """``closed``, ``open``, or ``half-open`` (cool-down over, probing)."""
        health = self._health.get(deployment)
        if health is None:
            return "closed"
        if health.state == "open" and self._clock() - health.opened_at >= self.config.cooldown_s:
            return "half-open"
        return health.state

    def _count(self, health: _Health, now: float, ok: bool) -> None:
        buckets = health.buckets
        while buckets and buckets[0][0] <= now - self.config.window_s:
            buckets.popleft()
        if not buckets or now - buckets[-1][0] >= self._bucket_s:
            buckets.append([now, 0, 0])
        buckets[-1][1] += 1
        if not ok:
            buckets[-1][2] += 1

    @staticmethod
    def _open(health: _Health, now: float) -> None:
        health.state = "open"
        health.opened_at = now
        health.probe_at = None
        health.consecutive = 0
        health.buckets.clear()


# -- plans and results -------------------------------------------------------------------
