"""OpenTelemetry traces (off by default): one span per request, one child per upstream attempt.

Spans are named ``<operation> <model>``: ``chat`` (``/v1/chat``,
``/v1/chat/completions``, ``/v1/messages``) or ``embeddings``.

The spans are built from the ``CallRecord`` when the request ends, with the
times it recorded, so tracing adds nothing to the request path until then and
nothing at all when it is off (the OpenTelemetry packages are not even
imported). Attributes follow the GenAI semantic conventions
(``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.usage.*``,
``gen_ai.provider.name``, ...) plus a few ``gateway.*`` ones.

Tracing is on when the config says ``tracing.enabled`` or ``OTEL_TRACES_EXPORTER``
names an exporter other than ``none``; ``OTEL_SDK_DISABLED=true`` turns it off
whatever else says. When the process already has an SDK tracer provider (run
under ``opentelemetry-instrument``, or embedded in an app that set one up) the
gateway uses it; otherwise it builds its own from the standard variables:
``OTEL_TRACES_EXPORTER`` (``otlp``, the default, over HTTP/protobuf;
``console``, to stderr), ``OTEL_EXPORTER_OTLP_*``, ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any

from ..config import ConfigError, GatewayConfig
from .telemetry import CallRecord

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

EXPORTERS = ("otlp", "console", "none")
SERVICE_NAME = "llm-gateway"


def exporter_names(config: GatewayConfig) -> list[str] | None:
    """The exporters to use, or ``None`` when tracing is off; ``ConfigError`` for a bad name."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    raw = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    names = [name.strip() for name in raw.split(",") if name.strip()]
    for name in names:
        if name not in EXPORTERS:
            raise ConfigError(
                f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (known: {', '.join(EXPORTERS)})"
            )
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    if protocol.strip() not in ("", "http/protobuf"):
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported (use http/protobuf)"
        )
    wanted = [name for name in names if name != "none"]
    if wanted:
        return wanted
    if config.tracing.enabled and not names:
        return ["otlp"]
    return None


class Tracing:
    """The tracing sink. ``close`` flushes and stops the provider if the gateway built it."""

    def __init__(self, config: GatewayConfig, names: list[str]) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._in_context = trace.set_span_in_context
        self._server, self._client = SpanKind.SERVER, SpanKind.CLIENT
        self._error = Status(StatusCode.ERROR)
        self._systems = {name: spec.type for name, spec in config.providers.items()}
        current = trace.get_tracer_provider()
        self._owned: TracerProvider | None = None
        if not isinstance(current, TracerProvider):
            current = self._owned = _build_provider(names)
        self._tracer: Tracer = current.get_tracer("src.gateway")

    def observe(self, record: CallRecord, fields: dict[str, Any]) -> None:
        to_epoch_ns = time.time_ns() - time.perf_counter_ns()
        start = int(record.started * 1e9) + to_epoch_ns
        end = start + int(fields["latency_ms"] * 1e6)
        operation = _operation(record.endpoint)
        span = self._tracer.start_span(
            f"{operation} {record.alias or 'unknown'}", kind=self._server, start_time=start,
            attributes=self._request_attributes(record, fields, operation),
        )  # fmt: skip
        parent = self._in_context(span)
        for attempt in record.attempts:
            child = self._tracer.start_span(
                f"{operation} {attempt.model}",
                context=parent,
                kind=self._client,
                start_time=int(attempt.started * 1e9) + to_epoch_ns,
                attributes={
                    "gen_ai.operation.name": operation,
                    "gen_ai.request.model": attempt.model,
                    "gen_ai.provider.name": self._systems.get(attempt.provider, "unknown"),
                    "gateway.provider": attempt.provider,
                },
            )
            if attempt.error is not None:
                child.set_attribute("error.type", attempt.error)
                child.set_status(self._error)
            child.end(end_time=int(attempt.ended * 1e9) + to_epoch_ns)
        if record.error_type is not None:
            span.set_attribute("error.type", record.error_type)
        if record.status >= 500:
            span.set_status(self._error)
        span.end(end_time=end)

    def _request_attributes(
        self, record: CallRecord, fields: dict[str, Any], operation: str
    ) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": record.alias or "",
            "gen_ai.request.stream": record.stream,
            "http.request.method": "POST",
            "http.route": record.endpoint,
            "http.response.status_code": record.status,
            "gateway.request_id": record.request_id,
            "gateway.client_id": record.client_id,
            "gateway.outcome": record.outcome,
            "gateway.targets_tried": record.targets_tried,
            "gateway.stub": record.stub,
        }
        if record.provider is not None:
            system = self._systems.get(record.provider, "unknown")
            attributes["gen_ai.provider.name"] = attributes["gen_ai.system"] = system
            attributes["gateway.provider"] = record.provider
        if record.upstream_model is not None and record.status < 400:
            attributes["gen_ai.response.model"] = record.upstream_model
        if record.prompt_tokens is not None:
            attributes["gen_ai.usage.input_tokens"] = record.prompt_tokens
        if record.completion_tokens is not None:
            attributes["gen_ai.usage.output_tokens"] = record.completion_tokens
        if record.ttft_ms is not None:
            attributes["gen_ai.response.time_to_first_chunk"] = record.ttft_ms / 1000
        if fields.get("cost_usd") is not None:
            attributes["gateway.cost_usd"] = fields["cost_usd"]
        return attributes

    def close(self) -> None:
        if self._owned is not None:
            self._owned.shutdown()


def _operation(endpoint: str) -> str:
    """The GenAI operation name of an endpoint: ``embeddings`` or ``chat``."""
    return "embeddings" if endpoint == "/v1/embeddings" else "chat"


def _build_provider(names: list[str]) -> TracerProvider:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    resource = Resource.create({} if named else {"service.name": SERVICE_NAME})
    provider = TracerProvider(resource=resource)
    for name in names:
        exporter: SpanExporter
        if name == "console":
            exporter = ConsoleSpanExporter(out=sys.stderr)  # stdout carries the log lines
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
