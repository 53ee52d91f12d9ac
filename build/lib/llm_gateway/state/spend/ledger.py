"""The spend ledger: one JSON line per charge, appended, read back at start-up.

A line is ``{"t": <unix seconds>, "c": <client_id>, "usd": <cost>}``. At
start-up the file is folded into per-client totals for the current UTC month
and rewritten with one line per client and day of that month, so it stays
small however long the gateway runs between restarts. A damaged line (a torn
write at a crash) is skipped.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path

import orjson

from ...observability.telemetry import LineWriter

DAY_S = 86_400


def day_of(t: float) -> int:
    """The UTC day number (days since the epoch)."""
    return int(t // DAY_S)


def month_of(t: float) -> tuple[int, int]:
    moment = time.gmtime(t)
    return moment.tm_year, moment.tm_mon


class Ledger:
    """Appends charges from a background thread; ``fold`` reads and compacts the file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._writer: LineWriter | None = None

    def fold(self, now: float) -> dict[str, dict[int, float]]:
        """Per client, USD per UTC day of the current month; compacts the file to that."""
        month = month_of(now)
        totals: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        for line in raw.splitlines():
            try:
                entry = orjson.loads(line)
                t, client, usd = float(entry["t"]), entry["c"], float(entry["usd"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
            if isinstance(client, str) and month_of(t) == month:
                totals[client][day_of(t)] += usd
        self._rewrite(totals)
        return {client: dict(days) for client, days in totals.items()}

    def append(self, t: float, client_id: str, usd: float) -> None:
        if self._writer is None:
            self._writer = LineWriter(self.path, echo=False)
        self._writer.write(orjson.dumps({"t": round(t, 3), "c": client_id, "usd": usd}))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _rewrite(self, totals: dict[str, dict[int, float]]) -> None:
        lines = [
            orjson.dumps({"t": day * DAY_S, "c": client, "usd": usd})
            for client, days in totals.items()
            for day, usd in sorted(days.items())
        ]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path.with_name(self.path.name + ".tmp")
        staging.write_bytes(b"".join(line + b"\n" for line in lines))
        os.replace(staging, self.path)
