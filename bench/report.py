"""Benchmark results: what one run collected, its summary, and how it is printed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from statistics import median
from typing import Any

from wrkload import WrkResult

MODES = ("nonstream", "stream")
DIRECT = "direct"
GATEWAY = "gateway"
# Below this ratio of direct to gateway throughput the fake upstream (or wrk,
# which shares its core) may be what limits the gateway rows.
BOTTLENECK_RATIO = 3.0


@dataclass(frozen=True)
class Round:
    index: int
    mode: str
    concurrency: int
    target: str
    result: WrkResult
    cpu_s: float | None  # CPU the gateway process burnt during the round
    rss_peak_kib: int | None


@dataclass(frozen=True)
class Row:
    mode: str
    concurrency: int
    target: str
    rps: float
    p50_ms: float
    p99_ms: float
    added_p50_ms: float | None  # minus direct, paired round by round
    added_p99_ms: float | None
    cpu_us_per_request: float | None
    rss_peak_mib: float | None
    errors: int


@dataclass(frozen=True)
class Ttft:
    samples: int
    p50_ms: dict[str, float]
    p99_ms: dict[str, float]
    added_p50_ms: dict[str, float]  # per non-direct target


@dataclass(frozen=True)
class SoakPoint:
    requests: int
    rss_mib: float


@dataclass(frozen=True)
class Soak:
    requested: int
    served: int
    errors: int
    concurrency: int
    cpu_us_per_request: float
    rss_before_mib: float
    rss_after_mib: float  # after the load, once the gateway sat idle a moment
    points: list[SoakPoint]


@dataclass
class Results:
    meta: dict[str, Any]
    startup_s: float
    rss_idle_mib: float
    rounds: list[Round] = field(default_factory=list)
    ttft: Ttft | None = None
    soak: Soak | None = None


def mib(kib: int) -> float:
    return kib / 1024


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def summarize(rounds: list[Round]) -> list[Row]:
    cells: dict[tuple[str, int, str], list[Round]] = {}
    for r in rounds:
        cells.setdefault((r.mode, r.concurrency, r.target), []).append(r)
    direct = {(r.index, r.mode, r.concurrency): r.result for r in rounds if r.target == DIRECT}
    rows = []
    for (mode, concurrency, target), runs in cells.items():
        added_p50: float | None = None
        added_p99: float | None = None
        if target != DIRECT:
            pairs = [(r.result, direct[(r.index, mode, concurrency)]) for r in runs]
            added_p50 = median(t.p50_ms - d.p50_ms for t, d in pairs)
            added_p99 = median(t.p99_ms - d.p99_ms for t, d in pairs)
        cpu = [r.cpu_s for r in runs if r.cpu_s is not None]
        requests = sum(r.result.requests for r in runs)
        peaks = [r.rss_peak_kib for r in runs if r.rss_peak_kib is not None]
        rows.append(
            Row(
                mode=mode,
                concurrency=concurrency,
                target=target,
                rps=median(r.result.rps for r in runs),
                p50_ms=median(r.result.p50_ms for r in runs),
                p99_ms=median(r.result.p99_ms for r in runs),
                added_p50_ms=added_p50,
                added_p99_ms=added_p99,
                # Ratio of sums: a round's CPU is only known to one clock tick.
                cpu_us_per_request=sum(cpu) / requests * 1e6 if cpu and requests else None,
                rss_peak_mib=mib(max(peaks)) if peaks else None,
                errors=sum(r.result.error_count for r in runs),
            )
        )
    return rows


def gateway_totals(rounds: list[Round]) -> tuple[float | None, float | None]:
    """CPU µs per request and peak RSS (MiB) over all gateway rounds."""
    gateway = [r for r in rounds if r.target == GATEWAY]
    requests = sum(r.result.requests for r in gateway)
    cpu = sum(r.cpu_s or 0.0 for r in gateway)
    peaks = [r.rss_peak_kib for r in gateway if r.rss_peak_kib is not None]
    return (cpu / requests * 1e6 if requests else None), (mib(max(peaks)) if peaks else None)


def warnings(rows: list[Row]) -> list[str]:
    found = []
    direct = {(r.mode, r.concurrency): r for r in rows if r.target == DIRECT}
    for row in rows:
        if row.rps == 0:
            found.append(f"{row.target} {row.mode} c={row.concurrency}: no request completed")
        if row.errors:
            found.append(
                f"{row.target} {row.mode} c={row.concurrency}: "
                f"{row.errors} errors (non-2xx, socket or timeout)"
            )
        base = direct.get((row.mode, row.concurrency))
        if row.target != DIRECT and base and base.rps < BOTTLENECK_RATIO * row.rps:
            ratio = base.rps / max(row.rps, 1e-9)
            found.append(
                f"{row.mode} c={row.concurrency}: direct is only {ratio:.1f}x {row.target}; "
                "the fake upstream or wrk may be limiting it"
            )
    return found


def _num(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


COLUMNS = (
    "mode", "conc", "target", "req/s", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms",
    "CPU µs/req", "RSS peak MiB", "errors",
)  # fmt: skip


def table_row(row: Row) -> str:
    cells = (
        row.mode,
        str(row.concurrency),
        row.target,
        f"{row.rps:,.0f}",
        _num(row.p50_ms, 3),
        _num(row.p99_ms, 3),
        _num(row.added_p50_ms, 3, signed=True),
        _num(row.added_p99_ms, 3, signed=True),
        _num(row.cpu_us_per_request, 0),
        _num(row.rss_peak_mib, 1),
        str(row.errors),
    )
    return "| " + " | ".join(cells) + " |"


def markdown(results: Results) -> str:
    rows = summarize(results.rounds)
    lines = []
    if rows:
        lines += [
            "| " + " | ".join(COLUMNS) + " |",
            "|---|---:|---|" + "---:|" * (len(COLUMNS) - 3),
        ]
        lines += [table_row(row) for row in rows]
        lines.append("")
    lines += [
        f"- gateway state backend: {results.meta.get('state_backend', 'memory')}",
        f"- gateway start-up to first `GET /healthz` 200: {results.startup_s:.2f} s",
        f"- gateway RSS idle: {results.rss_idle_mib:.1f} MiB",
    ]
    cpu_per_request, rss_peak = gateway_totals(results.rounds)
    if cpu_per_request is not None:
        lines += [
            f"- gateway CPU per request, all gateway rounds: {cpu_per_request:.0f} µs",
            f"- gateway RSS peak under load: {_num(rss_peak, 1)} MiB",
        ]
    if results.ttft is not None:
        t = results.ttft
        measured = ", ".join(
            f"{name} p50 {t.p50_ms[name]:.3f} / p99 {t.p99_ms[name]:.3f} ms" for name in t.p50_ms
        )
        added = ", ".join(f"{name} {value:+.3f} ms" for name, value in t.added_p50_ms.items())
        lines.append(
            f"- TTFT at c=1 ({t.samples} alternating samples each): {measured}; added p50: {added}"
        )
    if results.soak is not None:
        s = results.soak
        curve = " → ".join(f"{p.rss_mib:.1f}" for p in s.points)
        lines.append(
            f"- soak: {s.served:,} of {s.requested:,} requests at c={s.concurrency}, "
            f"{s.errors} errors, {s.cpu_us_per_request:.0f} µs CPU/req; "
            f"RSS before {s.rss_before_mib:.1f} MiB, after {s.rss_after_mib:.1f} MiB "
            f"({s.rss_after_mib - s.rss_before_mib:+.1f}); along the way (MiB): {curve}"
        )
    lines += [f"- WARNING: {w}" for w in warnings(rows)]
    return "\n".join(lines)


def to_json(results: Results) -> dict[str, Any]:
    rows = summarize(results.rounds)
    cpu_per_request, rss_peak = gateway_totals(results.rounds)
    return {
        "meta": results.meta,
        "gateway": {
            "startup_s": results.startup_s,
            "rss_idle_mib": results.rss_idle_mib,
            "rss_peak_mib": rss_peak,
            "cpu_us_per_request": cpu_per_request,
        },
        "rows": [asdict(row) for row in rows],
        "ttft": asdict(results.ttft) if results.ttft else None,
        "soak": asdict(results.soak) if results.soak else None,
        "rounds": [
            {**asdict(r), "result": {**asdict(r.result), "rps": r.result.rps}}
            for r in results.rounds
        ],
        "warnings": warnings(rows),
    }
