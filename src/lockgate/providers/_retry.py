"""Retries with exponential backoff and jitter, honouring ``Retry-After``.

Providers never retry on their own; whoever calls them (the client, the gateway's router)
wraps each call in `with_retries` or `stream_with_retries` with a `RetryPolicy` built from
``ProviderConfig.max_retries``.

What is retried: `RateLimited`, `Timeout`, `UpstreamError` (5xx, 408/409, dropped
connections, malformed answers). What is not: `AuthError`, `ContextWindowExceeded`, a
plain `ProviderError` (any other 4xx: the same request would fail the same way), and
anything that is not a `ProviderError`.

The wait before retry ``n`` (0-based) is ``min(max_delay, base_delay * 2**n)``, reduced by
up to ``jitter`` of itself at random (``jitter=1`` is "full jitter"). When the server sent
``Retry-After``, the wait is at least that long. When ``Retry-After`` is longer than
``max_delay`` the error is re-raised at once instead: a caller holding a user's request
should fail over to another deployment, not sleep for minutes.

Example::

    policy = RetryPolicy(max_retries=config.max_retries)
    response = await with_retries(lambda: provider.chat(request), policy)
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from lockgate.errors import ProviderError, RateLimited, Timeout, UpstreamError

__all__ = [
    "RetryPolicy",
    "is_retryable",
    "stream_with_retries",
    "with_retries",
]

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]
OnRetry = Callable[[int, ProviderError, float], None]

_RETRYABLE = (RateLimited, Timeout, UpstreamError)


def is_retryable(error: BaseException) -> bool:
    """Whether another attempt of the same request may succeed."""
    return isinstance(error, _RETRYABLE)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    Attributes:
        max_retries: attempts after the first one (0 disables retrying).
        base_delay: seconds before the first retry, doubled for each further one.
        max_delay: cap on any single wait, ``Retry-After`` included.
        jitter: fraction (0..1) of each wait that is randomised away.
    """

    max_retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("base_delay and max_delay must be >= 0")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be between 0 and 1")

    def delay(self, attempt: int, error: ProviderError, rand: float) -> float | None:
        """Seconds to wait before retry number `attempt` (0-based) after `error`, or None
        when the error must be re-raised (not retryable, retries used up, or a
        ``Retry-After`` beyond `max_delay`). `rand` is a uniform draw in [0, 1)."""
        if attempt >= self.max_retries or not is_retryable(error):
            return None
        backoff = min(self.max_delay, self.base_delay * 2.0**attempt)
        wait = backoff * (1.0 - self.jitter * rand)
        retry_after = error.retry_after if isinstance(error, RateLimited) else None
        if retry_after is not None:
            if retry_after > self.max_delay:
                return None
            wait = max(wait, retry_after)
        return wait


async def with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    on_retry: OnRetry | None = None,
    sleep: Sleep = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> T:
    """Await `call()` until it succeeds or `policy` gives up; then re-raise the last error.

    Args:
        call: makes one fresh attempt each time it is called.
        policy: when and how long to wait.
        on_retry: told ``(attempt, error, delay)`` before each wait (logging, metrics).
        sleep: the waiting function; tests pass a fake that records delays.
        rand: uniform draws in [0, 1) for the jitter.
    """
    attempt = 0
    while True:
        try:
            return await call()
        except ProviderError as error:
            wait = policy.delay(attempt, error, rand())
            if wait is None:
                raise
            if on_retry is not None:
                on_retry(attempt, error, wait)
            await sleep(wait)
            attempt += 1


async def stream_with_retries(
    open_stream: Callable[[], AsyncIterator[T]],
    policy: RetryPolicy,
    *,
    on_retry: OnRetry | None = None,
    sleep: Sleep = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> AsyncGenerator[T, None]:
    """Yield the items of `open_stream()`, retrying while nothing has been yielded yet.

    Once an item has reached the caller, a retry would repeat it, so a later failure is
    raised as `UpstreamError` (the original error is its ``__cause__``) and the gateway
    turns it into an SSE error event.

    Example::

        async for chunk in stream_with_retries(lambda: provider.stream(request), policy):
            ...
    """
    attempt = 0
    while True:
        started = False
        stream = open_stream()
        try:
            async for item in stream:
                started = True
                yield item
            return
        except ProviderError as error:
            if started:
                if isinstance(error, UpstreamError):
                    raise
                raise UpstreamError(
                    str(error), provider=error.provider, status=error.status
                ) from error
            wait = policy.delay(attempt, error, rand())
            if wait is None:
                raise
            if on_retry is not None:
                on_retry(attempt, error, wait)
        finally:
            if isinstance(stream, AsyncGenerator):
                await stream.aclose()
        await sleep(wait)
        attempt += 1
