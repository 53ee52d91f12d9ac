"""Streams benchmark results: one row per target and stream count, the table, the warnings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from streamload import StepResult

DIRECT = "direct"
# Above this share of busy time the load core (clients and fake upstream)
# may be what limits a step, not the target.
LOAD_BUSY_LIMIT = 0.9
# Above this share of the gateway's cores used by other processes, the
# target did not have its cores to itself.
GATEWAY_OTHERS_LIMIT = 0.1
# Direct streams per second below this share of the ideal rate: the load
# generator or the fake upstream cannot keep up with N on their core.
DIRECT_RATE_FLOOR = 0.9


@dataclass(frozen=True)
class Measured:
    """What /proc said over one step's window."""

    target_cpu_s: float | None  # the target's process tree; None when its pid is unknown
    rss_peak_kib: int | None  # highest sum of VmRSS over the tree, ramp and window
    rss_idle_kib: int | None  # before the first step
    load_busy: float  # share of the load core's time not idle
    gateway_cores_busy: float  # the same for the gateway's cores, averaged
    gateway_cores: int
    clients_cpu_s: float  # the load generator's process
    upstream_cpu_s: float  # the fake upstream's process


@dataclass(frozen=True)
class Step:
    target: str
    result: StepResult
    measured: Measured


@dataclass(frozen=True)
class Row:
    target: str
    streams: int
    streams_per_s: float
    chunks_per_s: float
    failed: int
    failures: dict[str, int]
    failed_in_ramp: int
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    ttft_max_ms: float | None
    gap_p50_ms: float | None
    gap_p99_ms: float | None
    gap_max_ms: float | None
    duration_p50_s: float | None
    duration_p99_s: float | None
    # This row minus direct at the same N (None for direct itself).
    added_ttft_p50_ms: float | None
    added_ttft_p99_ms: float | None
    added_gap_p50_ms: float | None
    added_gap_p99_ms: float | None
    added_gap_max_ms: float | None
    cpu_share: float | None  # the target's CPU time / window (1.0 = one core)
    cpu_us_per_stream: float | None
    cpu_us_per_chunk: float | None
    rss_peak_mib: float | None
    kib_per_stream: float | None
    load_busy: float
    gateway_cores_busy: float
    # Share of the gateway's cores used by processes other than the target
    # (None when the target's processes are unknown).
    gateway_cores_others: float | None
    clients_cpu_share: float
    upstream_cpu_share: float
    window_s: float
    ramp_s: float
    streaming_at_start: int
    in_flight_at_end: int
    waiting_at_end: int


def quantile(values: Sequence[float], pct: float, scale: float = 1.0) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))] * scale


def _minus(value: float | None, base: float | None) -> float | None:
    return None if value is None or base is None else value - base


def _row(step: Step, direct: Row | None) -> Row:
    r, m, t = step.result, step.measured, step.result.tally
    window = r.window_s
    cpu = m.target_cpu_s
    row = Row(
        target=step.target,
        streams=r.streams,
        streams_per_s=t.completed / window,
        chunks_per_s=t.chunks / window,
        failed=sum(t.failures.values()),
        failures=dict(t.failures),
        failed_in_ramp=sum(r.ramp_failures.values()),
        ttft_p50_ms=quantile(t.ttft, 50, 1000),
        ttft_p99_ms=quantile(t.ttft, 99, 1000),
        ttft_max_ms=max(t.ttft) * 1000 if t.ttft else None,
        gap_p50_ms=quantile(t.gaps, 50, 1000),
        gap_p99_ms=quantile(t.gaps, 99, 1000),
        gap_max_ms=max(t.gaps) * 1000 if t.gaps else None,
        duration_p50_s=quantile(t.durations, 50),
        duration_p99_s=quantile(t.durations, 99),
        added_ttft_p50_ms=None,
        added_ttft_p99_ms=None,
        added_gap_p50_ms=None,
        added_gap_p99_ms=None,
        added_gap_max_ms=None,
        cpu_share=cpu / window if cpu is not None else None,
        cpu_us_per_stream=cpu / t.completed * 1e6 if cpu is not None and t.completed else None,
        cpu_us_per_chunk=cpu / t.chunks * 1e6 if cpu is not None and t.chunks else None,
        rss_peak_mib=m.rss_peak_kib / 1024 if m.rss_peak_kib is not None else None,
        kib_per_stream=(
            (m.rss_peak_kib - m.rss_idle_kib) / r.streams
            if m.rss_peak_kib is not None and m.rss_idle_kib is not None
            else None
        ),
        load_busy=m.load_busy,
        gateway_cores_busy=m.gateway_cores_busy,
        gateway_cores_others=(
            max(0.0, m.gateway_cores_busy - cpu / window / m.gateway_cores)
            if cpu is not None
            else None
        ),
        clients_cpu_share=m.clients_cpu_s / window,
        upstream_cpu_share=m.upstream_cpu_s / window,
        window_s=window,
        ramp_s=r.ramp_s,
        streaming_at_start=r.streaming_at_start,
        in_flight_at_end=r.in_flight_at_end,
        waiting_at_end=r.waiting_at_end,
    )
    if direct is None or step.target == DIRECT:
        return row
    return Row(
        **{
            **asdict(row),
            "added_ttft_p50_ms": _minus(row.ttft_p50_ms, direct.ttft_p50_ms),
            "added_ttft_p99_ms": _minus(row.ttft_p99_ms, direct.ttft_p99_ms),
            "added_gap_p50_ms": _minus(row.gap_p50_ms, direct.gap_p50_ms),
            "added_gap_p99_ms": _minus(row.gap_p99_ms, direct.gap_p99_ms),
            "added_gap_max_ms": _minus(row.gap_max_ms, direct.gap_max_ms),
        }
    )


def summarize(steps: Sequence[Step]) -> list[Row]:
    """Rows in the order the steps ran; every step of N is compared with direct at N."""
    direct: dict[int, Row] = {}
    rows = []
    for step in steps:
        row = _row(step, direct.get(step.result.streams))
        if step.target == DIRECT:
            direct[row.streams] = row
        rows.append(row)
    return rows


def warnings(
    rows: Sequence[Row], steps: Sequence[Step], ideal_s: float, interval_s: float
) -> list[str]:
    """``ideal_s``: a stream's duration from the fake upstream's pacing alone;
    ``interval_s``: its pacing interval."""
    found = []
    samples = {(s.target, s.result.streams): s.result.failure_samples for s in steps}
    for row in rows:
        at = f"{row.target} N={row.streams}"
        if row.load_busy > LOAD_BUSY_LIMIT:
            rest = max(0.0, row.load_busy - row.clients_cpu_share - row.upstream_cpu_share)
            found.append(
                f"{at}: the load core was {row.load_busy:.0%} busy (clients "
                f"{row.clients_cpu_share:.0%}, fake upstream {row.upstream_cpu_share:.0%}, "
                f"other processes {rest:.0%}): "
                "the load side, not the target, may be the limit here; "
                "read this row's rates and latencies as bounds, not as the target's"
            )
        others = row.gateway_cores_others
        if row.target != DIRECT and others is not None and others > GATEWAY_OTHERS_LIMIT:
            found.append(
                f"{at}: other processes used {others:.0%} of the gateway core(s): the target "
                "had less than its core(s), so this row is worse than on a quiet machine"
            )
        if row.failed or row.failed_in_ramp:
            reasons = ", ".join(f"{n} {why}" for why, n in row.failures.items()) or "none"
            sample = next(iter(samples[(row.target, row.streams)].values()), b"")
            found.append(
                f"{at}: {row.failed} failed in the window ({reasons}), "
                f"{row.failed_in_ramp} in the ramp; first answer: {sample[:200]!r}"
            )
        if row.streaming_at_start < row.streams:
            found.append(
                f"{at}: only {row.streaming_at_start} of {row.streams} clients had a first "
                f"content event when the window opened, {row.ramp_s:.1f} s after the ramp "
                "began: streams are queued"
            )
        # In a steady loop a stream spends one interval of its ideal length
        # waiting for its first event; queued streams wait far longer.
        if row.waiting_at_end > 2 * row.streams * interval_s / ideal_s + row.streams / 10:
            found.append(
                f"{at}: {row.waiting_at_end} of {row.in_flight_at_end} streams in flight "
                "had no content event yet when the window closed: streams are queued"
            )
        ideal = row.streams / ideal_s
        if row.target == DIRECT and row.streams_per_s < DIRECT_RATE_FLOOR * ideal:
            found.append(
                f"{at}: {row.streams_per_s:,.0f} streams/s of an ideal {ideal:,.0f}: "
                "the load generator or the fake upstream falls behind at this N"
            )
    return found


def _num(value: float | None, digits: int, added: float | None = None) -> str:
    if value is None:
        return "-"
    text = f"{value:,.{digits}f}"
    return text if added is None else f"{text} ({added:+,.{digits}f})"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


COLUMNS = (
    "target", "N", "streams/s", "chunks/s", "failed",
    "TTFT p50 ms", "TTFT p99 ms", "gap p50 ms", "gap p99 ms", "gap max ms", "duration p50 s",
    "CPU", "CPU µs/stream", "CPU µs/chunk", "RSS peak MiB", "KiB/stream", "load core",
)  # fmt: skip


def table_row(row: Row) -> str:
    cells = (
        row.target,
        f"{row.streams:,}",
        _num(row.streams_per_s, 0),
        _num(row.chunks_per_s, 0),
        str(row.failed),
        _num(row.ttft_p50_ms, 1, row.added_ttft_p50_ms),
        _num(row.ttft_p99_ms, 1, row.added_ttft_p99_ms),
        _num(row.gap_p50_ms, 1, row.added_gap_p50_ms),
        _num(row.gap_p99_ms, 1, row.added_gap_p99_ms),
        _num(row.gap_max_ms, 1, row.added_gap_max_ms),
        _num(row.duration_p50_s, 2),
        _share(row.cpu_share),
        _num(row.cpu_us_per_stream, 0),
        _num(row.cpu_us_per_chunk, 1),
        _num(row.rss_peak_mib, 1),
        _num(row.kib_per_stream, 1),
        _share(row.load_busy),
    )
    return "| " + " | ".join(cells) + " |"


def markdown(steps: Sequence[Step], meta: dict[str, Any], ideal_s: float) -> str:
    rows = summarize(steps)
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|---|" + "---:|" * (len(COLUMNS) - 1),
        *(table_row(row) for row in rows),
        "",
        f"- upstream: {meta['chunks']} content events {meta['interval_ms']:g} ms apart "
        f"(a stream takes {ideal_s:.2f} s unhindered); window {meta['window_s']:g} s "
        f"after a {meta['ramp_s']:g} s ramp",
        f"- gateway: {meta['workers']} worker(s) on core(s) {meta['gateway_cpus']}, "
        f"state backend {meta['state_backend']}, config extra {meta['config_extra'] or 'none'}; "
        f"load (clients and fake upstream) on core {meta['load_cpu']}",
    ]
    interval_s = meta["interval_ms"] / 1000
    lines += [f"- WARNING: {w}" for w in warnings(rows, steps, ideal_s, interval_s)]
    return "\n".join(lines)


def to_json(steps: Sequence[Step], meta: dict[str, Any], ideal_s: float) -> dict[str, Any]:
    rows = summarize(steps)
    return {
        "meta": {**meta, "ideal_stream_s": ideal_s},
        "rows": [asdict(row) for row in rows],
        "warnings": warnings(rows, steps, ideal_s, meta["interval_ms"] / 1000),
    }
