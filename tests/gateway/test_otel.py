"""OpenTelemetry spans: gen_ai.* attributes, content capture, OTEL_* switches, no-op mode."""

from __future__ import annotations

import builtins
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from lockgate.config import Settings, load_settings
from lockgate.errors import ConfigError
from lockgate.gateway import create_app
from lockgate.gateway._otel import Span, Tracing, request_attributes
from lockgate.governance._tenants import Limits, TenantStore
from lockgate.providers._types import Usage
from lockgate.store import Store
from lockgate.testing import Rule, ScriptedUpstream
from tests.gateway._server import serving

OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_SERVICE_NAME",
)
MESSAGES = [
    {"role": "system", "content": "Classify the ticket."},
    {"role": "user", "content": "My card 4111 1111 1111 1111 was charged twice."},
]
GEN_AI_KEYS = {
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
}


@pytest.fixture(autouse=True)
def _no_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def make_settings(tmp_path: Path, *, capture_content: bool = False) -> Settings:
    return load_settings(home=tmp_path / "home", gateway={"capture_content": capture_content})


def traced(capture_content: bool = False) -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return Tracing(SimpleSpanProcessor(exporter), capture_content=capture_content), exporter


def chat(tracing: Tracing) -> None:
    attributes = request_attributes(
        operation="chat",
        provider="openai",
        request_model="fast",
        tenant="acme",
        route="fast",
    )
    with tracing.span("chat fast", attributes) as span:
        span.record_input(MESSAGES)
        span.record_response(
            model="gpt-4o-mini-2024-07-18",
            usage=Usage(input_tokens=31, output_tokens=4),
            cache="miss",
        )
        span.record_output('{"category": "billing"}', "stop")


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    spans = exporter.get_finished_spans()
    assert len(spans) == 1
    return spans[0]


def test_a_span_carries_exactly_the_gen_ai_attributes() -> None:
    tracing, exporter = traced()

    chat(tracing)

    span = only_span(exporter)
    attributes = dict(span.attributes or {})
    assert span.name == "chat fast"
    assert span.kind is SpanKind.CLIENT
    assert {k for k in attributes if k.startswith("gen_ai.")} == GEN_AI_KEYS
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "fast",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.usage.input_tokens": 31,
        "gen_ai.usage.output_tokens": 4,
        "lockgate.tenant": "acme",
        "lockgate.route": "fast",
        "lockgate.cache": "miss",
    }
    assert span.status.status_code is StatusCode.UNSET
    assert span.resource.attributes["service.name"] == "lockgate"


def test_content_is_captured_only_when_enabled() -> None:
    tracing, exporter = traced(capture_content=True)
    with tracing.span("chat fast", {"gen_ai.operation.name": "chat"}) as span:
        span.record_input(
            [
                *MESSAGES,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": '{"id": 1}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "found"},
            ]
        )
        span.record_output("billing", "stop")

    attributes = dict(only_span(exporter).attributes or {})
    assert json.loads(str(attributes["gen_ai.input.messages"])) == [
        {"role": "system", "parts": [{"type": "text", "content": "Classify the ticket."}]},
        {"role": "user", "parts": [{"type": "text", "content": MESSAGES[1]["content"]}]},
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "call_1", "name": "lookup", "arguments": '{"id": 1}'}
            ],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "call_1", "response": "found"}],
        },
    ]
    assert json.loads(str(attributes["gen_ai.output.messages"])) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "billing"}],
            "finish_reason": "stop",
        }
    ]


def test_content_is_absent_by_default() -> None:
    tracing, exporter = traced()

    chat(tracing)

    span = only_span(exporter)
    assert "gen_ai.input.messages" not in (span.attributes or {})
    assert "gen_ai.output.messages" not in (span.attributes or {})
    assert "4111" not in json.dumps(dict(span.attributes or {}))
    assert not span.events


def test_a_failure_marks_the_span() -> None:
    tracing, exporter = traced()

    with pytest.raises(TimeoutError), tracing.span("chat fast", {"gen_ai.operation.name": "chat"}):
        raise TimeoutError("upstream took too long")

    span = only_span(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "TimeoutError"


def test_an_error_kind_can_be_recorded_without_an_exception() -> None:
    tracing, exporter = traced()

    with tracing.span("chat fast") as span:
        span.record_error("rate_limited")

    span_data = only_span(exporter)
    assert span_data.status.status_code is StatusCode.ERROR
    assert (span_data.attributes or {})["error.type"] == "rate_limited"


def test_two_tracings_keep_their_spans_apart() -> None:
    first, first_spans = traced()
    second, second_spans = traced()

    chat(first)

    assert len(first_spans.get_finished_spans()) == 1
    assert second_spans.get_finished_spans() == ()
    second.shutdown()
    first.shutdown()


# -- from_settings -------------------------------------------------------------------


def test_without_otel_variables_tracing_is_off(tmp_path: Path) -> None:
    tracing = Tracing.from_settings(make_settings(tmp_path))

    assert not tracing.enabled


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, dict[str, str], bytes]]]]:
    """An OTLP/HTTP collector on a real socket; yields its URL and the requests it got."""
    received: list[tuple[str, dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()
    thread.join()


def exported_spans(body: bytes) -> list[Any]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return [
        (resource_spans.resource, span)
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]


def test_the_otlp_endpoint_turns_tracing_on_and_spans_reach_the_collector(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    collector: tuple[str, list[tuple[str, dict[str, str], bytes]]],
) -> None:
    url, received = collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url + "/")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20abc")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-eu")

    tracing = Tracing.from_settings(make_settings(tmp_path))
    assert tracing.enabled
    chat(tracing)
    assert received == []  # batched, off the request path
    tracing.shutdown()  # flushes

    [(path, headers, body)] = received
    assert path == "/v1/traces"
    assert headers["authorization"] == "Bearer abc"
    assert headers["content-type"] == "application/x-protobuf"
    [(resource, span)] = exported_spans(body)
    assert span.name == "chat fast"
    attributes = {a.key: a.value for a in span.attributes}
    assert {k for k in attributes if k.startswith("gen_ai.")} == GEN_AI_KEYS
    assert attributes["gen_ai.usage.input_tokens"].int_value == 31
    resource_attributes = {a.key: a.value.string_value for a in resource.attributes}
    assert resource_attributes["service.name"] == "gateway-eu"


def test_the_traces_endpoint_is_used_as_given(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    collector: tuple[str, list[tuple[str, dict[str, str], bytes]]],
) -> None:
    url, received = collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url + "/custom/path")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9/not-this-one")

    tracing = Tracing.from_settings(make_settings(tmp_path, capture_content=True))
    assert tracing.capture_content
    chat(tracing)
    tracing.shutdown()
    tracing.shutdown()  # twice is harmless

    [(path, _, body)] = received
    assert path == "/custom/path"
    [(_, span)] = exported_spans(body)
    assert "gen_ai.input.messages" in {a.key for a in span.attributes}


@pytest.mark.parametrize(
    ("variables", "enabled"),
    [
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
    ],
)
def test_the_standard_switches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], enabled: bool
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    tracing = Tracing.from_settings(make_settings(tmp_path))

    assert tracing.enabled is enabled
    tracing.shutdown()


def test_an_unsupported_exporter_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")

    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER: unsupported exporter 'zipkin'"):
        Tracing.from_settings(make_settings(tmp_path))


# -- disabled mode ---------------------------------------------------------------------


def test_without_the_packages_tracing_is_a_no_op(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    for name in list(sys.modules):
        if name.startswith("opentelemetry"):
            monkeypatch.delitem(sys.modules, name)
    real_import = builtins.__import__

    def no_opentelemetry(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("opentelemetry"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_opentelemetry)

    tracing = Tracing.from_settings(make_settings(tmp_path, capture_content=True))

    assert not tracing.enabled
    assert 'pip install "lockgate[otel]"' in caplog.text
    with tracing.span("chat fast", {"gen_ai.operation.name": "chat"}) as span:
        span.record_input(MESSAGES)
        span.record_response(model="m", usage=Usage(1, 2), cache="hit")
        span.record_output("x", "stop")
        span.record_error("boom")
        span.set("lockgate.route", "fast")
    with pytest.raises(ValueError, match="propagates"), tracing.span("chat fast"):
        raise ValueError("propagates")
    tracing.shutdown()
    assert not any(name.startswith("opentelemetry") for name in sys.modules)


def test_the_disabled_span_allocates_nothing_per_request() -> None:
    tracing = Tracing()

    first = tracing.span("chat a", {"gen_ai.operation.name": "chat"})
    second = tracing.span("chat b")

    assert first is second
    with first as span:
        assert type(span) is Span
        with second as again:
            assert again is span


def test_the_gateway_spans_whole_and_streamed_answers(tmp_path: Path) -> None:
    with ScriptedUpstream([Rule(reply="billing", usage=(9, 1))]) as up:
        settings = load_settings(
            home=tmp_path / "home",
            providers={"up": {"type": "openai", "base_url": up.url + "/v1"}},
            routes={"fast": {"deployments": ["up/gpt-4o-mini-2024-07-18"]}},
            gateway={"capture_content": True},
        )
        store = Store.open(settings)
        tenants = TenantStore(store, actor="admin")
        tenants.create_tenant("acme", Limits())
        _, secret = tenants.create_key("acme")
        store.close()
        app = create_app(settings)
        tracing, exporter = traced(capture_content=True)
        app.gateway.tracing = tracing
        headers = {"authorization": f"Bearer {secret}", "x-lockgate-cache": "bypass"}
        with serving(app) as url:
            for stream in (False, True):
                body = {"model": "fast", "messages": MESSAGES, "stream": stream}
                with httpx.stream(
                    "POST", url + "/v1/chat/completions", json=body, headers=headers
                ) as response:
                    assert response.status_code == 200
                    response.read()
    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == ["chat fast", "chat fast"]
    for span in spans:
        attributes = dict(span.attributes or {})
        content_keys = {"gen_ai.input.messages", "gen_ai.output.messages"}
        assert {k for k in attributes if k.startswith("gen_ai.")} == GEN_AI_KEYS | content_keys
        assert attributes["gen_ai.usage.input_tokens"] == 9
        assert attributes["lockgate.tenant"] == "acme"
        output = json.loads(str(attributes["gen_ai.output.messages"]))
        assert output[0]["parts"] == [{"type": "text", "content": "billing"}]
        assert "4111" in str(attributes["gen_ai.input.messages"])
        assert span.status.status_code is StatusCode.UNSET
