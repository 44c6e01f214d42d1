"""Optional OpenTelemetry spans for gateway requests, with the GenAI semantic conventions.

Tracing is on when the ``otel`` extra is installed (``pip install "lockgate[otel]"``) and
the standard variables ask for it: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) or ``OTEL_TRACES_EXPORTER=otlp``. Spans are then
exported over OTLP/HTTP by a batch processor, off the request path. Otherwise
`Tracing.from_settings` returns a disabled `Tracing` whose methods do nothing and
allocate nothing, and the OpenTelemetry packages are never imported.

Attributes of a request's span:

- ``gen_ai.operation.name`` (``chat`` | ``embeddings``), ``gen_ai.provider.name``,
  ``gen_ai.request.model``, then once answered ``gen_ai.response.model``,
  ``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens``;
- ``lockgate.tenant``, ``lockgate.route``, ``lockgate.cache``;
- ``error.type`` when the request failed;
- message content (``gen_ai.input.messages``, ``gen_ai.output.messages``, as JSON in the
  conventions' parts format) only when ``gateway.capture_content`` is true: prompts and
  answers often carry personal data.

The tracer provider belongs to the `Tracing` object, not to the process (no global
provider is installed), so two apps in one process keep their spans apart.

Example::

    tracing = Tracing.from_settings(settings)
    attributes = request_attributes(
        operation="chat", provider="openai", request_model="fast", tenant="acme", route="fast"
    )
    with tracing.span("chat fast", attributes) as span:
        span.record_input(messages)  # dropped unless capture_content
        response = await provider.chat(request)
        span.record_response(model=response.model, usage=response.usage, cache="miss")
    tracing.shutdown()  # when the app stops: exports what is buffered
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, Literal

from lockgate.errors import ConfigError
from lockgate.providers._types import Message, Usage

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.trace import Span as OtelSpan
    from opentelemetry.trace import Tracer

    from lockgate.config import Settings

__all__ = ["AttributeValue", "Span", "Tracing", "request_attributes"]

AttributeValue = str | bool | int | float | Sequence[str] | Sequence[int] | Sequence[float]

_SERVICE_NAME = "lockgate"
_DEFAULT_OTLP_HTTP = "http://localhost:4318"
_TRACES_PATH = "v1/traces"


def request_attributes(
    *,
    operation: Literal["chat", "embeddings"],
    provider: str | None,
    request_model: str,
    tenant: str | None = None,
    route: str | None = None,
) -> dict[str, AttributeValue]:
    """The attributes a request's span starts with; unknown values are left out.

    Args:
        operation: the GenAI operation.
        provider: the provider type answering (``openai``, ``anthropic``, ``local``).
        request_model: the model the client asked for (a route, a prompt reference, or
            a provider model).
        tenant: the tenant's name.
        route: the route that served it.
    """
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": operation,
        "gen_ai.request.model": request_model,
    }
    if provider is not None:
        attributes["gen_ai.provider.name"] = provider
    if tenant is not None:
        attributes["lockgate.tenant"] = tenant
    if route is not None:
        attributes["lockgate.route"] = route
    return attributes


class Span:
    """A request's span, as the gateway sees it. This base class is the disabled one:
    every method does nothing."""

    __slots__ = ()

    def set(self, key: str, value: AttributeValue) -> None:
        """Set one attribute."""

    def record_response(
        self, *, model: str | None, usage: Usage | None, cache: str | None = None
    ) -> None:
        """The answering model, the token usage and the cache result."""

    def record_input(self, messages: Sequence[Message]) -> None:
        """The request's messages; kept only when content capture is on."""

    def record_output(self, content: str | None, finish_reason: str | None = None) -> None:
        """The answer's text; kept only when content capture is on."""

    def record_error(self, error: BaseException | str) -> None:
        """Mark the span failed; `error` is the exception or an error kind."""


class _NoSpanContext(AbstractContextManager[Span]):
    """The disabled `Tracing.span`: one shared instance, nothing allocated per request."""

    __slots__ = ()

    def __enter__(self) -> Span:
        return _NO_SPAN

    def __exit__(self, *exc_info: object) -> None:
        return None


_NO_SPAN = Span()
_NO_SPAN_CONTEXT = _NoSpanContext()


class _RecordingSpan(Span):
    __slots__ = ("_capture", "_span")

    def __init__(self, span: OtelSpan, capture_content: bool) -> None:
        self._span = span
        self._capture = capture_content

    def set(self, key: str, value: AttributeValue) -> None:
        self._span.set_attribute(key, value)

    def record_response(
        self, *, model: str | None, usage: Usage | None, cache: str | None = None
    ) -> None:
        if model is not None:
            self._span.set_attribute("gen_ai.response.model", model)
        if usage is not None:
            self._span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
            self._span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
        if cache is not None:
            self._span.set_attribute("lockgate.cache", cache)

    def record_input(self, messages: Sequence[Message]) -> None:
        if self._capture:
            parts = [_message_parts(message) for message in messages]
            self._span.set_attribute("gen_ai.input.messages", _json(parts))

    def record_output(self, content: str | None, finish_reason: str | None = None) -> None:
        if self._capture:
            message: dict[str, Any] = {
                "role": "assistant",
                "parts": [] if content is None else [{"type": "text", "content": content}],
            }
            if finish_reason is not None:
                message["finish_reason"] = finish_reason
            self._span.set_attribute("gen_ai.output.messages", _json([message]))

    def record_error(self, error: BaseException | str) -> None:
        from opentelemetry.trace import Status, StatusCode

        kind = error if isinstance(error, str) else type(error).__name__
        self._span.set_attribute("error.type", kind)
        self._span.set_status(Status(StatusCode.ERROR, None if isinstance(error, str) else kind))


class Tracing:
    """Spans for gateway requests, or nothing at all when tracing is off.

    Args:
        processor: where finished spans go (a `BatchSpanProcessor` around an OTLP exporter
            in production; a `SimpleSpanProcessor` around an `InMemorySpanExporter` in
            tests). None: tracing is disabled and OpenTelemetry is not imported.
        capture_content: record prompts and answers on spans.
        service_name: the ``service.name`` resource attribute.
    """

    def __init__(
        self,
        processor: SpanProcessor | None = None,
        *,
        capture_content: bool = False,
        service_name: str = _SERVICE_NAME,
    ) -> None:
        self.capture_content = capture_content
        self._provider: TracerProvider | None = None
        self._tracer: Tracer | None = None
        if processor is None:
            return
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        from lockgate._version import __version__

        resource = Resource.create({"service.name": service_name})
        # Not registered as the global provider, and shut down by the app, not at exit.
        self._provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        self._provider.add_span_processor(processor)
        self._tracer = self._provider.get_tracer("lockgate.gateway", __version__)

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    @classmethod
    def from_settings(cls, settings: Settings) -> Tracing:
        """Tracing as the ``OTEL_*`` variables and ``gateway.capture_content`` ask.

        Raises:
            ConfigError: ``OTEL_TRACES_EXPORTER`` names an exporter other than otlp/none.
        """
        env = settings.environment
        capture = settings.gateway.capture_content
        if (env("OTEL_SDK_DISABLED") or "").strip().lower() == "true":
            return cls(capture_content=capture)
        exporters = {
            name.strip().lower() for name in (env("OTEL_TRACES_EXPORTER") or "").split(",")
        } - {""}
        unknown = exporters - {"otlp", "none"}
        if unknown:
            raise ConfigError(
                f"environment variable OTEL_TRACES_EXPORTER: unsupported exporter "
                f"{', '.join(sorted(unknown))!r}; lockgate exports spans with 'otlp' "
                f"(OTLP over HTTP) or not at all ('none')"
            )
        traces_endpoint = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        base_endpoint = env("OTEL_EXPORTER_OTLP_ENDPOINT")
        wanted = "otlp" in exporters or (
            "none" not in exporters and (traces_endpoint or base_endpoint)
        )
        if not wanted:
            return cls(capture_content=capture)
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.util.re import parse_env_headers
        except ImportError:
            import logging

            logging.getLogger("lockgate.gateway").warning(
                "OTEL_* variables ask for traces, but OpenTelemetry is not installed; "
                'spans are off (install them with: pip install "lockgate[otel]")'
            )
            return cls(capture_content=capture)

        endpoint = traces_endpoint or _signal_endpoint(base_endpoint or _DEFAULT_OTLP_HTTP)
        raw_headers = env("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env("OTEL_EXPORTER_OTLP_HEADERS")
        headers = dict(parse_env_headers(raw_headers, liberal=True)) if raw_headers else None
        exporter = OTLPSpanExporter(endpoint=endpoint, headers=headers)
        return cls(
            BatchSpanProcessor(exporter),
            capture_content=capture,
            service_name=env("OTEL_SERVICE_NAME") or _SERVICE_NAME,
        )

    def span(
        self,
        name: str,
        attributes: Mapping[str, AttributeValue] | None = None,
        *,
        current: bool = True,
    ) -> AbstractContextManager[Span]:
        """A client span around one request; ended (and marked failed on an exception)
        when the block exits.

        Args:
            name: by the conventions, ``"{operation} {request model}"`` (``chat fast``).
            attributes: the starting attributes, see `request_attributes`.
            current: make it the current span while the block runs. A span held open
                across the ``yield``\\s of a streamed answer must not be: a generator
                closed from another task would detach a context it never attached.
        """
        if self._tracer is None:
            return _NO_SPAN_CONTEXT
        return self._recording_span(self._tracer, name, attributes, current)

    @contextmanager
    def _recording_span(
        self,
        tracer: Tracer,
        name: str,
        attributes: Mapping[str, AttributeValue] | None,
        current: bool,
    ) -> Iterator[Span]:
        from opentelemetry.trace import SpanKind

        manager: AbstractContextManager[OtelSpan] = (
            tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes)
            if current
            else _ended(tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes))
        )
        with manager as otel_span:
            span = _RecordingSpan(otel_span, self.capture_content)
            try:
                yield span
            except (GeneratorExit, asyncio.CancelledError):
                span.record_error("cancelled")  # the client left, or the server is stopping
                raise
            except BaseException as exc:
                span.record_error(exc)
                raise

    def shutdown(self) -> None:
        """Export what is still buffered and stop; safe to call twice, and when disabled."""
        provider, self._provider, self._tracer = self._provider, None, None
        if provider is not None:
            provider.shutdown()


@contextmanager
def _ended(span: OtelSpan) -> Iterator[OtelSpan]:
    """`span` as a block that ends it, without making it the current span."""
    try:
        yield span
    finally:
        span.end()


def _signal_endpoint(base: str) -> str:
    """OTLP/HTTP appends the signal's path to ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
    return f"{base.rstrip('/')}/{_TRACES_PATH}"


def _message_parts(message: Message) -> dict[str, Any]:
    """An OpenAI-shaped message in the conventions' ``{role, parts}`` form."""
    role = message.get("role", "user")
    parts: list[dict[str, Any]] = []
    content = message.get("content")
    if role == "tool":
        parts.append(
            {"type": "tool_call_response", "id": message.get("tool_call_id"), "response": content}
        )
        return {"role": role, "parts": parts}
    if isinstance(content, str):
        parts.append({"type": "text", "content": content})
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append({"type": "text", "content": part.get("text")})
            elif isinstance(part, str):
                parts.append({"type": "text", "content": part})
            else:
                # Images and audio: their kind, not their (possibly huge) data.
                kind = part.get("type") if isinstance(part, dict) else None
                parts.append({"type": kind or "unknown"})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        parts.append(
            {
                "type": "tool_call",
                "id": call.get("id"),
                "name": function.get("name"),
                "arguments": function.get("arguments"),
            }
        )
    return {"role": role, "parts": parts}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
