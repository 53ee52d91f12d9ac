"""Prometheus metrics, fed from each request's ``CallRecord`` by the telemetry sink.

Every figure comes from the record at ``Telemetry.emit``, so metrics count
exactly the requests the log counts. The children of each label combination
are looked up once and cached, so a request costs a dictionary lookup and a
few increments (docs/performance.md has the measured cost).

With ``PROMETHEUS_MULTIPROC_DIR`` set (several uvicorn workers), prometheus-
client keeps each process's values in files there and ``render`` merges them:
counters and histograms are summed; the in-flight gauge sums the live
processes; the circuit gauge shows the worst state any live process sees.
"""

from __future__ import annotations

import os
from typing import Any

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
)
from prometheus_client.exposition import choose_encoder

from ..config import ConfigError, GatewayConfig
from .labels import Labels, configured_targets
from .telemetry import CallRecord

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Refusals that mean "this client has used its allowance", by error type.
LIMIT_ERRORS = frozenset({"rate_limit_exceeded", "budget_exceeded"})
CIRCUIT_STATES = {"closed": 0, "half_open": 1, "open": 2}
# From a cached answer to a long generation: 5 ms to 2 min.
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)

# `_created` samples double the exposition for no use on a dashboard.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]


class _Series:
    """The metric children of one (client, alias, provider, status) combination."""

    __slots__ = ("cost", "duration", "requests", "tokens_in", "tokens_out", "ttft", "upstream")

    def __init__(self, metrics: Metrics, client: str, alias: str, provider: str, status: str):
        self.requests = metrics.requests.labels(client, alias, provider, status)
        self.duration = metrics.duration.labels(alias, provider)
        self.upstream = metrics.upstream.labels(alias, provider)
        self.ttft = metrics.ttft.labels(alias, provider)
        self.tokens_in = metrics.tokens.labels(client, alias, provider, "input")
        self.tokens_out = metrics.tokens.labels(client, alias, provider, "output")
        self.cost = metrics.cost.labels(client, alias, provider)


class Metrics:
    """The gateway's Prometheus metrics in a registry of their own."""

    def __init__(self, config: GatewayConfig, labels: Labels) -> None:
        self._labels = labels
        self._series: dict[tuple[str, str, str, int], _Series] = {}
        self._attempts: dict[tuple[str, str], Counter] = {}
        self.registry = registry = CollectorRegistry(auto_describe=False)
        by_request = ["client", "alias", "provider"]
        self.requests = Counter(
            "gateway_requests", "Requests answered, by client, alias, provider and HTTP status.",
            [*by_request, "status"], registry=registry,
        )  # fmt: skip
        self.duration = Histogram(
            "gateway_request_duration_seconds", "Whole request, from handling to the last byte.",
            ["alias", "provider"], buckets=_SECONDS, registry=registry,
        )  # fmt: skip
        self.upstream = Histogram(
            "gateway_upstream_duration_seconds",
            "The last upstream attempt (for streams, until its first chunk).",
            ["alias", "provider"], buckets=_SECONDS, registry=registry,
        )  # fmt: skip
        self.ttft = Histogram(
            "gateway_time_to_first_token_seconds", "Streams: time to the first event sent.",
            ["alias", "provider"], buckets=_SECONDS, registry=registry,
        )  # fmt: skip
        self.tokens = Counter(
            "gateway_tokens", "Tokens used, by direction (type: input or output).",
            [*by_request, "type"], registry=registry,
        )  # fmt: skip
        self.cost = Counter(
            "gateway_cost_usd", "Spend in US dollars (from the log line's cost_usd).",
            by_request, registry=registry,
        )  # fmt: skip
        self.limited = Counter(
            "gateway_limited_requests", "Requests refused by a rate limit or a budget.",
            ["client", "error_type"], registry=registry,
        )  # fmt: skip
        self.fallbacks = Counter(
            "gateway_fallbacks", "Requests that needed more than one target.",
            ["alias"], registry=registry,
        )  # fmt: skip
        self.retries = Counter(
            "gateway_upstream_retries", "Retries of the same target (from the line's retries).",
            ["alias"], registry=registry,
        )  # fmt: skip
        self.attempts = Counter(
            "gateway_upstream_attempts", "Upstream calls by result (ok, timeout, http_503, ...).",
            ["provider", "result"], registry=registry,
        )  # fmt: skip
        self.circuit = Gauge(
            "gateway_circuit_state", "Circuit of each target: 0 closed, 1 half-open, 2 open.",
            ["provider", "model"], registry=registry, multiprocess_mode="livemax",
        )  # fmt: skip
        self.shadow = Counter(
            "gateway_shadow_decisions",
            "What rules in shadow mode would have done, by rule and would-be outcome.",
            ["rule", "would"], registry=registry,
        )  # fmt: skip
        self.queue_waiting = Gauge(
            "gateway_queue_length", "Requests waiting for rate-limit capacity (queue_timeout_ms).",
            registry=registry, multiprocess_mode="livesum",
        )  # fmt: skip
        self.queue_outcomes = Counter(
            "gateway_queue_outcomes",
            "Requests that waited for capacity, by outcome (admitted, timed_out, left, full).",
            ["outcome"], registry=registry,
        )  # fmt: skip
        self.in_flight = Gauge(
            "gateway_requests_in_flight", "API requests being handled (streams: to the end).",
            registry=registry, multiprocess_mode="livesum",
        )  # fmt: skip
        self.pool_in_use = Gauge(
            "gateway_upstream_connections_in_use",
            "Upstream connections in use (one per request being sent or answered), by provider.",
            ["provider"], registry=registry, multiprocess_mode="livesum",
        )  # fmt: skip
        self.pool_waiting = Gauge(
            "gateway_upstream_pool_waiting",
            "Requests waiting for a free upstream connection (all max_connections in use).",
            ["provider"], registry=registry, multiprocess_mode="livesum",
        )  # fmt: skip
        self.pool_wait = Histogram(
            "gateway_upstream_pool_wait_seconds",
            "How long requests that found no free connection waited (served or not).",
            ["provider"], buckets=_SECONDS, registry=registry,
        )  # fmt: skip
        for provider, model in configured_targets(config):
            self.circuit.labels(provider, model).set(0)

    def observe(self, record: CallRecord, fields: dict[str, Any]) -> None:
        """The telemetry sink: count one finished request."""
        labels = self._labels
        client, alias = labels.client(record.client_id), labels.alias(record.alias)
        provider = record.provider or "none"
        key = (client, alias, provider, record.status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(self, client, alias, provider, str(record.status))
        series.requests.inc()
        series.duration.observe(fields["latency_ms"] / 1000)
        if record.upstream_latency_ms is not None:
            series.upstream.observe(record.upstream_latency_ms / 1000)
        if record.ttft_ms is not None:
            series.ttft.observe(record.ttft_ms / 1000)
        if record.prompt_tokens:
            series.tokens_in.inc(record.prompt_tokens)
        if record.completion_tokens:
            series.tokens_out.inc(record.completion_tokens)
        cost = fields.get("cost_usd")
        if cost:
            series.cost.inc(cost)
        if record.error_type in LIMIT_ERRORS:
            self.limited.labels(client, record.error_type).inc()
        if record.targets_tried > 1:
            self.fallbacks.labels(alias).inc()
        retries = fields.get("retries")
        if retries:
            self.retries.labels(alias).inc(retries)
        if record.shadow is not None:
            for note in record.shadow:
                self.shadow.labels(note["rule"], note["would"]).inc()
        for attempt in record.attempts:
            result = (attempt.provider, attempt.error or "ok")
            child = self._attempts.get(result)
            if child is None:
                child = self._attempts[result] = self.attempts.labels(*result)
            child.inc()

    def pool(self, provider: str) -> PoolGauges:
        """The observer of one provider's connection pool (``providers.PoolObserver``)."""
        return PoolGauges(self, provider)

    def queue_length(self, length: int) -> None:
        self.queue_waiting.set(length)

    def queue_outcome(self, outcome: str) -> None:
        self.queue_outcomes.labels(outcome).inc()

    def circuit_changed(self, provider: str, model: str, state: str) -> None:
        self.circuit.labels(provider, model).set(CIRCUIT_STATES.get(state, 0))

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition the scraper's ``Accept`` asks for (Prometheus text or OpenMetrics),
        and its content type: this process's registry, or every worker's when multiprocess.
        """
        encoder, content_type = choose_encoder(accept or "")
        if os.environ.get(MULTIPROC_ENV):
            merged = CollectorRegistry(auto_describe=False)
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return encoder(merged), content_type
        return encoder(self.registry), content_type


class PoolGauges:
    """One provider's pool metrics, its label children looked up once."""

    __slots__ = ("_in_use", "_wait", "_waiting")

    def __init__(self, metrics: Metrics, provider: str) -> None:
        self._in_use = metrics.pool_in_use.labels(provider)
        self._waiting = metrics.pool_waiting.labels(provider)
        self._wait = metrics.pool_wait.labels(provider)

    def in_use(self, delta: int) -> None:
        self._in_use.inc(delta)

    def waiting(self, delta: int) -> None:
        self._waiting.inc(delta)

    def waited(self, seconds: float) -> None:
        self._wait.observe(seconds)


def mark_process_dead() -> None:
    """At shutdown in multiprocess mode: drop this process's live gauges."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class InFlight:
    """API requests in progress in this process (the dashboard reads ``count``)."""

    __slots__ = ("_gauge", "count")

    def __init__(self, metrics: Metrics | None) -> None:
        self.count = 0
        self._gauge = metrics.in_flight if metrics is not None else None

    def enter(self) -> None:
        self.count += 1
        if self._gauge is not None:
            self._gauge.inc()

    def leave(self) -> None:
        self.count -= 1
        if self._gauge is not None:
            self._gauge.dec()


def check_multiproc_dir() -> None:
    """Refuse to start when ``PROMETHEUS_MULTIPROC_DIR`` names no directory."""
    path = os.environ.get(MULTIPROC_ENV)
    if path and not os.path.isdir(path):
        raise ConfigError(f"{MULTIPROC_ENV} {path}: not a directory (create it, empty, first)")
