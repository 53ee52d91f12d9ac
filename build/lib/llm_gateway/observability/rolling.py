"""The dashboard's live figures: an in-memory rolling aggregate of the last hour and day.

Fed by the same telemetry sink call as the metrics. Two rings of time buckets,
60 of one minute and 96 of fifteen minutes, each holding counts, spend, a
latency histogram (``sketch.LatencyHistogram``) and per-client figures; a
bucket is reused once its time has passed out of the window, so memory is
fixed by the ring sizes and the client label cap. The figures are this
process's: with several workers each keeps its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..config import GatewayConfig
from .labels import Labels, configured_targets
from .metrics import LIMIT_ERRORS, InFlight
from .sketch import LatencyHistogram
from .telemetry import CallRecord

WINDOWS = {"hour": (60, 60), "day": (900, 96)}  # name: (bucket seconds, buckets)


class _Bucket:
    __slots__ = (
        "clients", "cost", "errors", "index", "latency", "limited", "requests", "tokens_in",
        "tokens_out",
    )  # fmt: skip

    def __init__(self, index: int) -> None:
        self.index = index
        self.requests = 0
        self.errors = 0
        self.cost = 0.0
        self.tokens_in = 0
        self.tokens_out = 0
        self.latency = LatencyHistogram()
        self.limited: dict[str, int] = {}
        self.clients: dict[str, list[float]] = {}  # label: [requests, errors, cost]


class _Ring:
    def __init__(self, width_s: int, size: int) -> None:
        self.width = width_s
        self.size = size
        self.slots: list[_Bucket | None] = [None] * size

    def bucket(self, now: float) -> _Bucket:
        index = int(now // self.width)
        slot = index % self.size
        bucket = self.slots[slot]
        if bucket is None or bucket.index != index:
            bucket = self.slots[slot] = _Bucket(index)
        return bucket

    def window(self, now: float) -> list[tuple[int, _Bucket | None]]:
        """``(start epoch second, bucket or None)`` for each bucket of the window, oldest first."""
        last = int(now // self.width)
        out: list[tuple[int, _Bucket | None]] = []
        for index in range(last - self.size + 1, last + 1):
            bucket = self.slots[index % self.size]
            out.append((index * self.width, bucket if bucket and bucket.index == index else None))
        return out


class Rolling:
    def __init__(
        self,
        config: GatewayConfig,
        labels: Labels,
        in_flight: InFlight,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._labels = labels
        self._in_flight = in_flight
        self._rings = {name: _Ring(width, size) for name, (width, size) in WINDOWS.items()}
        self._circuits = dict.fromkeys(configured_targets(config), "closed")

    def observe(self, record: CallRecord, fields: dict[str, Any]) -> None:
        """The telemetry sink: add one finished request to the current bucket of each ring."""
        now = self._clock()
        client = self._labels.client(record.client_id)
        failed = record.error_type is not None
        limited = record.error_type if record.error_type in LIMIT_ERRORS else None
        latency = fields["latency_ms"]
        cost = fields.get("cost_usd") or 0.0
        tokens_in, tokens_out = record.prompt_tokens or 0, record.completion_tokens or 0
        for ring in self._rings.values():
            bucket = ring.bucket(now)
            bucket.requests += 1
            bucket.latency.add(latency)
            bucket.cost += cost
            bucket.tokens_in += tokens_in
            bucket.tokens_out += tokens_out
            per_client = bucket.clients.get(client)
            if per_client is None:
                per_client = bucket.clients[client] = [0, 0, 0.0]
            per_client[0] += 1
            per_client[2] += cost
            if failed:
                bucket.errors += 1
                per_client[1] += 1
            if limited is not None:
                bucket.limited[limited] = bucket.limited.get(limited, 0) + 1

    def circuit_changed(self, provider: str, model: str, state: str) -> None:
        self._circuits[(provider, model)] = state

    def snapshot(self, window: str) -> dict[str, Any]:
        """The dashboard's figures for ``window`` (``hour`` or ``day``)."""
        ring = self._rings[window]
        now = self._clock()
        series, totals = [], _Totals()
        for start, bucket in ring.window(now):
            if bucket is None:
                series.append(_point(start, None))
                continue
            series.append(_point(start, bucket))
            totals.add(bucket)
        return {
            "window": window,
            "bucket_seconds": ring.width,
            "generated_at": int(now),
            "in_flight": self._in_flight.count,
            "series": series,
            "totals": totals.summary(),
            "clients": totals.clients(),
            "limited_by_type": dict(sorted(totals.limited.items())),
            "circuits": [
                {"provider": provider, "model": model, "state": state}
                for (provider, model), state in sorted(self._circuits.items())
            ],
        }


def _point(start: int, bucket: _Bucket | None) -> dict[str, Any]:
    if bucket is None:
        return {"t": start, "requests": 0, "errors": 0, "limited": 0, "cost_usd": 0.0,
                "p50_ms": None, "p95_ms": None}  # fmt: skip
    return {
        "t": start,
        "requests": bucket.requests,
        "errors": bucket.errors,
        "limited": sum(bucket.limited.values()),
        "cost_usd": round(bucket.cost, 6),
        "p50_ms": bucket.latency.quantile(0.5),
        "p95_ms": bucket.latency.quantile(0.95),
    }


class _Totals:
    def __init__(self) -> None:
        self.requests = self.errors = self.tokens_in = self.tokens_out = 0
        self.cost = 0.0
        self.latency = LatencyHistogram()
        self.limited: dict[str, int] = {}
        self.by_client: dict[str, list[float]] = {}

    def add(self, bucket: _Bucket) -> None:
        self.requests += bucket.requests
        self.errors += bucket.errors
        self.tokens_in += bucket.tokens_in
        self.tokens_out += bucket.tokens_out
        self.cost += bucket.cost
        self.latency.merge(bucket.latency)
        for error_type, n in bucket.limited.items():
            self.limited[error_type] = self.limited.get(error_type, 0) + n
        for client, figures in bucket.clients.items():
            mine = self.by_client.setdefault(client, [0, 0, 0.0])
            for i, value in enumerate(figures):
                mine[i] += value

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "limited": sum(self.limited.values()),
            "input_tokens": self.tokens_in,
            "output_tokens": self.tokens_out,
            "cost_usd": round(self.cost, 6),
            "p50_ms": self.latency.quantile(0.5),
            "p95_ms": self.latency.quantile(0.95),
            "p99_ms": self.latency.quantile(0.99),
        }

    def clients(self) -> list[dict[str, Any]]:
        """Clients by spend, then by requests: the biggest first."""
        ranked = sorted(self.by_client.items(), key=lambda item: (-item[1][2], -item[1][0]))
        return [
            {"client": client, "requests": int(req), "errors": int(err), "cost_usd": round(cost, 6)}
            for client, (req, err, cost) in ranked
        ]
