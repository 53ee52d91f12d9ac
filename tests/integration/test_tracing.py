"""OpenTelemetry: a span per request with GenAI attributes, a child per attempt, off by default."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.support.configs import UPSTREAM, make_config, stub_config
from tests.support.gateway import running_gateway
from tests.support.payloads import chat_body, completion

SECONDARY = "http://secondary.test/v1/chat/completions"


@pytest.fixture(scope="session")
def exporter() -> InMemorySpanExporter:
    """The process's tracer provider, as ``opentelemetry-instrument`` would install one."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    return memory


@pytest.fixture
def spans(exporter, monkeypatch):
    for name in ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    exporter.clear()
    return exporter


async def test_a_request_is_one_server_span_with_genai_attributes(
    gateway_client, upstream, tmp_path, provider_key, spans
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    client = await gateway_client(make_config(tmp_path, tracing={"enabled": True}))
    response = await client.post(
        "/v1/chat/completions", json=chat_body(), headers={"X-Client-Id": "team-t"}
    )
    assert response.status_code == 200
    finished = spans.get_finished_spans()
    (server,) = [s for s in finished if s.kind == SpanKind.SERVER]
    (attempt,) = [s for s in finished if s.kind == SpanKind.CLIENT]
    attributes = dict(server.attributes)
    assert server.name == "chat default-chat"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "default-chat"
    assert attributes["gen_ai.response.model"] == "up-model-a"
    assert attributes["gen_ai.usage.input_tokens"] == 11
    assert attributes["gen_ai.usage.output_tokens"] == 5
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gateway.client_id"] == "team-t"
    assert attributes["gateway.request_id"] == response.headers["x-request-id"]
    assert attributes["http.response.status_code"] == 200
    assert attempt.parent is not None and attempt.parent.span_id == server.context.span_id
    assert attempt.context.trace_id == server.context.trace_id
    assert attempt.attributes["gen_ai.request.model"] == "up-model-a"
    assert server.start_time <= attempt.start_time <= attempt.end_time <= server.end_time


async def test_each_attempt_is_a_child_span_and_failures_are_marked(
    gateway_client, upstream, tmp_path, provider_key, spans
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(503)
    upstream.post(SECONDARY).mock(side_effect=httpx.ConnectError("refused"))
    client = await gateway_client(make_config(tmp_path, tracing={"enabled": True}))
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 502
    finished = spans.get_finished_spans()
    (server,) = [s for s in finished if s.kind == SpanKind.SERVER]
    attempts = sorted(
        (s for s in finished if s.kind == SpanKind.CLIENT), key=lambda s: s.start_time
    )
    assert [a.attributes["gateway.provider"] for a in attempts] == ["primary", "secondary"]
    assert [a.attributes["error.type"] for a in attempts] == ["http_503", "connect"]
    assert all(a.status.status_code == StatusCode.ERROR for a in attempts)
    assert server.status.status_code == StatusCode.ERROR
    assert server.attributes["error.type"] == "upstream_error"
    assert server.attributes["gateway.targets_tried"] == 2


async def test_tracing_is_off_by_default(gateway_client, upstream, tmp_path, provider_key, spans):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    client = await gateway_client(make_config(tmp_path))
    assert (await client.post("/v1/chat/completions", json=chat_body())).status_code == 200
    assert spans.get_finished_spans() == ()


class _Collector(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.slow
def test_spans_reach_an_otlp_collector_named_by_the_environment(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
        "OTEL_SERVICE_NAME": "gw-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    try:
        with running_gateway(stub_config(tmp_path), tmp_path, env=env) as gateway:
            base = gateway.base_url
            body = {"model": "default-chat", "messages": [{"role": "user", "content": "hi"}]}
            assert httpx.post(base + "/v1/chat/completions", json=body).status_code == 200
    finally:  # the gateway flushes its spans at shutdown
        server.shutdown()
    spans, services = [], set()
    for path, payload in _Collector.received:
        assert path == "/v1/traces"
        export = ExportTraceServiceRequest.FromString(payload)
        for resource_spans in export.resource_spans:
            services |= {a.value.string_value for a in resource_spans.resource.attributes
                         if a.key == "service.name"}  # fmt: skip
            spans += [s for scope in resource_spans.scope_spans for s in scope.spans]
    assert services == {"gw-under-test"}
    names = sorted(s.name for s in spans)
    assert names == ["chat default-chat", "chat gpt-4o-mini"]
    request_span = next(s for s in spans if s.name == "chat default-chat")
    attributes = {a.key: a.value for a in request_span.attributes}
    assert attributes["gen_ai.usage.output_tokens"].int_value == 17
