"""Usage figures from telemetry log lines: per UTC day, client and alias.

``UsageReport.feed`` takes the log's lines one at a time (bytes, as read), so
a log of any size is read in constant memory: one row of counters and one
latency histogram (``sketch.LatencyHistogram``, percentiles within 2.5 %)
per (day, client, alias). A line that is not a JSON object with a string
``timestamp`` and an integer ``status`` is counted in ``damaged`` and skipped;
lines of other events (``event`` other than ``request``) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from ..observability.sketch import LatencyHistogram

COLUMNS = (
    "day", "client_id", "alias", "requests", "errors", "input_tokens", "output_tokens",
    "cost_usd", "p50_latency_ms", "p95_latency_ms",
)  # fmt: skip


@dataclass(slots=True)
class _Row:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)


def parse_bound(text: str, *, end: bool) -> str:
    """A ``--since``/``--until`` value as the ``YYYY-MM-DDTHH:MM:SS`` UTC prefix it compares to.

    A date alone means its first second for ``--since`` and the whole day for
    ``--until`` (the bound is the next midnight, exclusive); a date and time
    (``2026-11-27T06:00``, with ``Z`` or an offset, else UTC) is taken as given.
    Raises ``ValueError`` for anything else.
    """
    text = text.strip()
    if len(text) == 10:
        day = date.fromisoformat(text)
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        if end:
            moment += timedelta(days=1)
    else:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


class UsageReport:
    """Aggregates request lines within ``[since, until)`` (prefixes from ``parse_bound``)."""

    def __init__(self, since: str | None = None, until: str | None = None) -> None:
        self.since = since
        self.until = until
        self.lines = 0
        self.damaged = 0
        self._rows: dict[tuple[str, str, str], _Row] = {}

    def feed(self, raw: bytes) -> None:
        self.lines += 1
        try:
            line = orjson.loads(raw)
            stamp = line["timestamp"]
            status = line["status"]
            if type(stamp) is not str or type(status) is not int or len(stamp) < 19:
                raise TypeError("timestamp or status")
            if line.get("event", "request") != "request":
                return
            second = stamp[:19]
            if (self.since is not None and second < self.since) or (
                self.until is not None and second >= self.until
            ):
                return
            self._add(stamp[:10], line, status)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            if raw.strip():
                self.damaged += 1

    def _add(self, day: str, line: dict[str, Any], status: int) -> None:
        key = (day, str(line.get("client_id")), str(line.get("alias") or "-"))
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = _Row()
        row.requests += 1
        if status >= 400:
            row.errors += 1
        prompt, completion, cost = (
            line.get("prompt_tokens"), line.get("completion_tokens"), line.get("cost_usd"),
        )  # fmt: skip
        if type(prompt) is int:
            row.input_tokens += prompt
        if type(completion) is int:
            row.output_tokens += completion
        if type(cost) is float or type(cost) is int:
            row.cost_usd += cost
        latency = line.get("latency_ms")
        if type(latency) is float or type(latency) is int:
            row.latency.add(latency)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per (day, client, alias), sorted, with the keys of ``COLUMNS``."""
        return [
            {
                "day": day,
                "client_id": client,
                "alias": alias,
                "requests": row.requests,
                "errors": row.errors,
                "input_tokens": row.input_tokens,
                "output_tokens": row.output_tokens,
                "cost_usd": round(row.cost_usd, 6),
                "p50_latency_ms": row.latency.quantile(0.5),
                "p95_latency_ms": row.latency.quantile(0.95),
            }
            for (day, client, alias), row in sorted(self._rows.items())
        ]
