"""The OpenAI-compatible gateway: tenants and keys, budgets and rate limits, routing with
fallbacks and circuit breakers, exact and semantic caches, context-window trimming,
streaming, traces, Prometheus metrics and OpenTelemetry spans.

Example:
    >>> app = create_app(load_settings())      # serve with: lockgate serve
"""

from lockgate.gateway._app import Gateway
from lockgate.gateway._factory import create_app

__all__ = ["Gateway", "create_app"]
