"""Telemetry: one JSON line per request, to stdout and appended to the log file.

The line is built from ``CallRecord``'s explicit fields, never from a request
or header dict, so a key cannot slip into it. Every string field is bounded
(``MAX_FIELD_CHARS``; longer ones are cut and marked ``…[N chars]``), so a
client cannot make a line as long as what it sent. structlog renders it (orjson);
``LineWriter`` writes it from a background thread, so a slow disk never stalls
the event loop, and a single writer means lines never interleave.

``Telemetry.emit`` is the one place a finished request is reported: after the
line it hands the record and its fields to the sinks (Prometheus metrics, the
dashboard's rolling aggregate, tracing), so every view counts the same requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
import structlog

from .logfile import LineWriter

if TYPE_CHECKING:
    from ..providers.base import Usage

__all__ = ["Attempt", "CallRecord", "CircuitListener", "LineWriter", "Sink", "Telemetry"]


class Attempt(NamedTuple):
    """One call to one upstream target: ``perf_counter`` times, and how it failed if it did."""

    provider: str
    model: str
    started: float
    ended: float
    error: str | None


class CallRecord:
    """Everything the telemetry line says about one request, filled in as it runs."""

    __slots__ = (
        "alias",
        "attempts",
        "breaker",
        "cache_read_tokens",
        "cache_write_tokens",
        "client_id",
        "completion_tokens",
        "cost_usd",
        "endpoint",
        "error_type",
        "outcome",
        "payload",
        "policies",
        "prompt_tokens",
        "provider",
        "reasoning_tokens",
        "request_id",
        "requested_model",
        "retries",
        "route",
        "shadow",
        "skipped_targets",
        "started",
        "status",
        "stream",
        "stub",
        "targets_tried",
        "ttft_ms",
        "upstream_latency_ms",
        "upstream_model",
        "use_case",
    )  # fmt: skip

    def __init__(self, request_id: str, endpoint: str, client_id: str) -> None:
        self.started = time.perf_counter()
        self.request_id = request_id
        self.endpoint = endpoint
        self.client_id = client_id
        self.alias: str | None = None
        self.requested_model: str | None = None
        self.route: str | None = None
        self.provider: str | None = None
        self.upstream_model: str | None = None
        self.status = 200
        self.error_type: str | None = None
        self.upstream_latency_ms: float | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        # Parts of the prompt read from / written to the provider's cache, and of the
        # completion spent reasoning: in the line only when there were some.
        self.cache_read_tokens = 0
        self.cache_write_tokens = 0
        self.reasoning_tokens = 0
        self.stub = False
        self.targets_tried = 0
        self.retries = 0
        self.skipped_targets = 0
        self.breaker: str | None = None
        self.stream = False
        self.ttft_ms: float | None = None
        self.attempts: list[Attempt] = []
        self.cost_usd: float | None = None
        self.use_case: str | None = None
        self.policies: tuple[str, ...] = ()
        # Set only by a log_payload policy: the forwarded request and the answer, secrets masked.
        self.payload: dict[str, Any] | None = None
        # What rules in shadow mode would have done (each: rule, kind, would, ...); None: nothing.
        self.shadow: list[dict[str, Any]] | None = None
        # completed; refused (by the gateway, or by the provider for a bad request);
        # upstream_error; client_disconnected; error (a gateway fault, status 500)
        self.outcome = "completed"

    def fields(self) -> dict[str, Any]:
        prompt, completion = self.prompt_tokens, self.completion_tokens
        total = None if prompt is None and completion is None else (prompt or 0) + (completion or 0)
        fields: dict[str, Any] = {
            "request_id": self.request_id,
            "client_id": bounded(self.client_id),
            "endpoint": self.endpoint,
            "requested_model": bounded(self.requested_model),
            "route": bounded(self.route),
            "alias": bounded(self.alias),
            "provider": self.provider,
            "upstream_model": self.upstream_model,
            "status": self.status,
            "error_type": self.error_type,
            "latency_ms": round((time.perf_counter() - self.started) * 1000, 3),
            "upstream_latency_ms": self.upstream_latency_ms,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": total,
            "stub": self.stub,
            "targets_tried": self.targets_tried,
            "retries": self.retries,
            "skipped_targets": self.skipped_targets,
            "breaker": self.breaker,
            "stream": self.stream,
            "ttft_ms": self.ttft_ms,
            "outcome": self.outcome,
            "cost_usd": self.cost_usd,
            "use_case": bounded(self.use_case),
            "policies": self.policies,
        }
        if self.cache_read_tokens:
            fields["cache_read_tokens"] = self.cache_read_tokens
        if self.cache_write_tokens:
            fields["cache_write_tokens"] = self.cache_write_tokens
        if self.reasoning_tokens:
            fields["reasoning_tokens"] = self.reasoning_tokens
        if self.payload is not None:
            fields["payload"] = self.payload
        if self.shadow is not None:
            fields["shadow"] = self.shadow
        return fields

    def usage(self, usage: Usage) -> None:
        """The answer's token counts (``providers.Usage``)."""
        self.prompt_tokens, self.completion_tokens = usage.prompt_tokens, usage.completion_tokens
        self.cache_read_tokens = usage.cache_read_tokens
        self.cache_write_tokens = usage.cache_write_tokens
        self.reasoning_tokens = usage.reasoning_tokens

    def note_shadow(self, note: dict[str, Any]) -> None:
        if self.shadow is None:
            self.shadow = [note]
        else:
            self.shadow.append(note)


MAX_FIELD_CHARS = 256


def bounded(value: str | None) -> str | None:
    """``value``, or its first ``MAX_FIELD_CHARS`` characters and how long it was."""
    if value is None or len(value) <= MAX_FIELD_CHARS:
        return value
    return f"{value[:MAX_FIELD_CHARS]}…[{len(value)} chars]"


class _WriterLogger:
    """The structlog logger at the end of the pipeline: hands rendered lines to the writer."""

    def __init__(self, writer: LineWriter) -> None:
        self._writer = writer

    def msg(self, line: bytes) -> None:
        self._writer.write(line)

    info = warning = error = msg


Sink = Callable[[CallRecord, dict[str, Any]], None]
"""Told of each finished request: its record and the fields of its line."""

CircuitListener = Callable[[str, str, str], None]
"""Told when a target's circuit changes: ``(provider, model, state)``."""


class Telemetry:
    """Emits one line per request through structlog into a ``LineWriter``, then feeds the sinks.

    ``circuit_changed`` is the hook a circuit breaker calls on each state
    change (``closed``, ``half_open``, ``open``); the listeners (metrics, the
    dashboard) keep the current state of each target.
    """

    def __init__(
        self,
        writer: LineWriter,
        sinks: Sequence[Sink] = (),
        circuit_listeners: Sequence[CircuitListener] = (),
    ) -> None:
        self.writer = writer
        self._sinks = tuple(sinks)
        self._circuit_listeners = tuple(circuit_listeners)
        self._log = structlog.wrap_logger(
            _WriterLogger(writer),
            processors=[
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
                structlog.processors.JSONRenderer(serializer=orjson.dumps),
            ],
        )

    def emit(self, record: CallRecord) -> None:
        fields = record.fields()
        self._log.info("request", **fields)
        for sink in self._sinks:
            try:
                sink(record, fields)
            except Exception:  # a broken view must never fail the request it reports
                logging.getLogger("gateway").exception("telemetry sink failed")

    def circuit_changed(self, provider: str, model: str, state: str) -> None:
        for listener in self._circuit_listeners:
            listener(provider, model, state)

    def close(self) -> None:
        self.writer.close()
