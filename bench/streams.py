"""Many concurrent streams, direct vs through the gateway, against a paced fake upstream.

    python bench/run.py --streams [100,500,1000,2000] [--chunks 40] [--interval-ms 50]
                        [--window S] [--ramp S] [--gateway-url URL] [--workers N]
                        [--gateway-config-extra JSON] [--json FILE] [--quick]

For each N, N clients stream chat completions in a loop, first straight at
the fake upstream (direct), then through the gateway (then through the
``--gateway-url`` one): a ramp, then a measured window. The gateway is pinned
to one core; the clients, the fake upstream and this script share the other.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from launch import (
    CHAT_PATH,
    PROVIDER,
    Target,
    add_stack_options,
    backend_name,
    cpu_list,
    gateway_config,
    host_meta,
    other_target,
    raise_open_files_limit,
    start_fake_upstream,
    start_gateway,
    start_redis,
    write_config,
)
from probe import STREAM_BODY, HttpProbe
from procstat import core_times, process_tree, tree_cpu_seconds, tree_rss_kib
from servers import HOST, ensure_running, fail, progress
from streamload import Load, run_step
from streamreport import DIRECT, Measured, Step, markdown, to_json

DEFAULT_STREAMS = "100,500,1000,2000"
SETTLE_MAX_S = 10.0  # after a step, at most this long for the servers to go quiet
QUIET_SHARE = 0.03  # a server using less CPU than this is quiet


@dataclass(frozen=True)
class Reading:
    target_s: float  # CPU seconds of the target's processes
    clients_s: float  # of this process
    upstream_s: float  # of the fake upstream
    load_core: tuple[int, int]  # (busy, total) ticks
    gateway_cores: tuple[int, int]


class ProcMeter:
    """Reads the target's processes, this process, the fake upstream and the
    load and gateway cores from /proc around one step's window (a
    ``streamload.Meter``), and samples the target's RSS."""

    def __init__(
        self, target_pids: list[int], upstream_pid: int, load_cpu: int, gateway_cpus: set[int]
    ) -> None:
        self._target = target_pids
        self._upstream = upstream_pid
        self._load_cpu = load_cpu
        self._gateway_cpus = gateway_cpus
        self._peak = 0
        self._start: Reading | None = None
        self._end: Reading | None = None

    def _read(self) -> Reading:
        return Reading(
            tree_cpu_seconds(self._target),
            time.process_time(),
            tree_cpu_seconds([self._upstream]),
            core_times([self._load_cpu]),
            core_times(self._gateway_cpus),
        )

    def sample(self) -> None:
        if self._target:
            self._peak = max(self._peak, tree_rss_kib(self._target))

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> None:
        self._end = self._read()

    def measured(self, rss_idle_kib: int | None) -> Measured:
        start, end = self._start, self._end
        assert start is not None and end is not None
        self.sample()

        def busy(a: tuple[int, int], b: tuple[int, int]) -> float:
            return (b[0] - a[0]) / (b[1] - a[1]) if b[1] > a[1] else 0.0

        return Measured(
            target_cpu_s=end.target_s - start.target_s if self._target else None,
            rss_peak_kib=self._peak if self._target else None,
            rss_idle_kib=rss_idle_kib,
            load_busy=busy(start.load_core, end.load_core),
            gateway_cores_busy=busy(start.gateway_cores, end.gateway_cores),
            gateway_cores=len(self._gateway_cpus),
            clients_cpu_s=end.clients_s - start.clients_s,
            upstream_cpu_s=end.upstream_s - start.upstream_s,
        )


def content_events(body: bytes) -> int:
    """SSE events in ``body`` whose first choice's delta has content."""
    count = 0
    for line in body.replace(b"\r\n", b"\n").split(b"\n"):
        payload = line[5:].strip() if line.startswith(b"data:") else b""
        if not payload.startswith(b"{"):
            continue
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError, IndexError, TypeError):
            if orjson.loads(payload)["choices"][0]["delta"].get("content"):
                count += 1
    return count


def check_stream(target: Target, chunks: int) -> None:
    """One stream before any load, so that a misconfigured target fails now
    with its answer rather than as a column of failures."""
    probe = HttpProbe(target.url, target.api_key, timeout_s=30)
    try:
        result = probe.post(STREAM_BODY)
    except OSError as exc:
        fail(f"{target.name} at {target.url}: {exc}")
    finally:
        probe.close()
    content = content_events(result.body)
    if result.status != 200 or b"data: [DONE]" not in result.body or content < chunks:
        fail(
            f"{target.name}: a streamed request got {result.status} with {content} content "
            f"events (expected {chunks}): {result.body[:300]!r}"
        )


def settle(pids: list[int]) -> None:
    """Wait until the servers have finished with the aborted streams."""
    deadline = time.monotonic() + SETTLE_MAX_S
    time.sleep(0.3)
    while time.monotonic() < deadline:
        before = tree_cpu_seconds(pids)
        time.sleep(0.2)
        if tree_cpu_seconds(pids) - before < QUIET_SHARE * 0.2:
            return


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run.py --streams",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--streams",
        nargs="?",
        const=DEFAULT_STREAMS,
        default=DEFAULT_STREAMS,
        metavar="N,N,...",
        help=f"concurrent streams per step (default {DEFAULT_STREAMS})",
    )
    parser.add_argument(
        "--chunks", type=int, default=40, help="content events per stream (default 40)"
    )
    parser.add_argument(
        "--interval-ms", type=float, default=50.0, help="ms between content events (default 50)"
    )
    parser.add_argument(
        "--window", type=float, default=10.0, help="measured seconds per step (default 10)"
    )
    parser.add_argument(
        "--ramp",
        type=float,
        help="seconds over which the clients start (default: one unhindered stream's duration)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run for CI: N=4 and 16, short streams, 1 s"
    )
    parser.add_argument(
        "--gateway-pid", type=int, help="pid of --gateway-url's process, for its CPU and memory"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn workers (more than 1 uses --state redis)"
    )
    parser.add_argument(
        "--gateway-cpus",
        metavar="N,N,...",
        help="cores the gateway is pinned to (default: the first; the load keeps the last)",
    )
    parser.add_argument(
        "--gateway-config-extra",
        type=json.loads,
        default={},
        metavar="JSON",
        help=f'merged into the gateway config, e.g. \'{{"providers": {{"{PROVIDER}": '
        '{"max_connections": 5000}}}\'',
    )
    add_stack_options(parser)
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.streams, args.chunks, args.interval_ms, args.window, args.ramp = "4,16", 8, 20, 1, 0.2
    try:
        args.counts = [int(n) for n in args.streams.split(",")]
    except ValueError:
        parser.error(f"--streams takes numbers separated by commas, got {args.streams!r}")
    if min(args.counts) < 1 or args.chunks < 1 or args.interval_ms <= 0 or args.workers < 1:
        parser.error("--streams, --chunks and --workers must be >= 1, --interval-ms > 0")
    if args.ramp is None:
        # Starts spread over one stream's length put the clients at evenly
        # spread phases, so that streams end at a steady rate in the window.
        args.ramp = (args.chunks + 1) * args.interval_ms / 1000
    if args.window <= 0 or args.ramp < 0:
        parser.error("--window must be > 0 and --ramp >= 0")
    if not isinstance(args.gateway_config_extra, dict):
        parser.error("--gateway-config-extra must be a JSON object")
    if args.workers > 1:
        args.state = "redis"  # several workers share limits only through Redis
    return args


def run_meta(
    args: argparse.Namespace,
    gateway_cpus: set[int],
    load_cpu: int,
    other: Target | None,
    open_files: int,
) -> dict[str, Any]:
    return {
        **host_meta(),
        "streams": args.counts,
        "chunks": args.chunks,
        "interval_ms": args.interval_ms,
        "window_s": args.window,
        "ramp_s": args.ramp,
        "workers": args.workers,
        "state_backend": backend_name(args),
        "config_extra": args.gateway_config_extra,
        "gateway_cpus": cpu_list(gateway_cpus),
        "load_cpu": load_cpu,
        "other_gateway_url": other.url if other else None,
        "open_files_limit": open_files,
    }


def run_steps(
    args: argparse.Namespace,
    targets: list[Target],
    upstream_pid: int,
    cores: tuple[set[int], int],
    alive: Callable[[], None],
) -> list[Step]:
    """Every N, every target in turn; ``cores``: the gateway's and the load's."""
    gateway_cpus, load_cpu = cores
    # Idle: started and has served a stream, no load yet.
    trees = {t.name: process_tree(t.pid) if t.pid else [] for t in targets}
    idle = {name: tree_rss_kib(pids) if pids else None for name, pids in trees.items()}
    steps = []
    for count in args.counts:
        for target in targets:
            load = Load(
                target.url, STREAM_BODY, target.api_key, args.chunks, args.ramp, args.window
            )
            meter = ProcMeter(trees[target.name], upstream_pid, load_cpu, gateway_cpus)
            result = run_step(load, count, meter)
            alive()
            step = Step(target.name, result, meter.measured(idle[target.name]))
            steps.append(step)
            tally = result.tally
            progress(
                f"N={count:<5} {target.name:8} {tally.completed / result.window_s:8,.1f} "
                f"streams/s  {tally.chunks / result.window_s:9,.0f} chunks/s  "
                f"failed {sum(tally.failures.values())}  "
                f"load core {step.measured.load_busy:.0%}"
            )
            settle([upstream_pid, *trees[target.name]])
    return steps


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        fail("needs two CPU cores: one for the gateway, one for the load")
    load_cpu = available[-1]
    gateway_cpus = {available[0]}
    if args.gateway_cpus:
        gateway_cpus = {int(cpu) for cpu in args.gateway_cpus.split(",")}
        if not gateway_cpus <= set(available):
            fail(f"--gateway-cpus {args.gateway_cpus}: this process may use cores {available}")
    other = (
        other_target(args.gateway_url, args.gateway_key, args.gateway_pid)
        if args.gateway_url
        else None
    )
    os.sched_setaffinity(0, {load_cpu})
    open_files = raise_open_files_limit()
    # Each stream is a socket here and one or two in the gateway and the upstream.
    if open_files < 2 * max(args.counts) + 256:
        fail(f"the open files limit is {open_files}; raise it (ulimit -n) for these stream counts")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    ideal_s = (args.chunks + 1) * args.interval_ms / 1000
    meta = run_meta(args, gateway_cpus, load_cpu, other, open_files)
    with (
        tempfile.TemporaryDirectory(prefix="gateway-streams-") as tmp_name,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(tmp_name)
        pacing = ["--chunks", str(args.chunks), "--interval-ms", str(args.interval_ms)]
        upstream, upstream_port = start_fake_upstream(
            stack, tmp / "upstream.out", load_cpu, args.upstream_port, pacing
        )
        redis_url = (
            start_redis(stack, tmp, load_cpu, args.redis_cluster) if args.state == "redis" else None
        )
        mode = "cluster" if args.redis_cluster else "standalone"
        config = gateway_config(
            upstream_port, tmp / "gateway.log", redis_url, args.gateway_config_extra, mode
        )
        config_path = write_config(tmp / "gateway.json", config)
        gateway = start_gateway(stack, config_path, tmp / "gateway.out", gateway_cpus, args.workers)
        progress(f"gateway pid {gateway.proc.pid} healthy after {gateway.startup_s:.2f} s")
        meta["gateway_startup_s"] = gateway.startup_s
        targets = [
            Target(DIRECT, f"http://{HOST}:{upstream_port}{CHAT_PATH}"),
            Target("gateway", f"http://{HOST}:{gateway.port}{CHAT_PATH}", pid=gateway.proc.pid),
        ]
        if other is not None:
            targets.append(other)
        for target in targets:
            check_stream(target, args.chunks)
        if args.workers > 1:
            time.sleep(1)  # every worker up, not only the first to answer

        def alive() -> None:
            ensure_running(upstream, "fake upstream", tmp / "upstream.out")
            ensure_running(gateway.proc, "gateway", gateway.log)

        steps = run_steps(args, targets, upstream.pid, (gateway_cpus, load_cpu), alive)
    meta["rss_idle_mib"] = {
        s.target: s.measured.rss_idle_kib / 1024
        for s in steps
        if s.measured.rss_idle_kib is not None
    }

    print(markdown(steps, meta, ideal_s))
    if args.json:
        args.json.write_text(json.dumps(to_json(steps, meta, ideal_s), indent=2) + "\n")
        progress(f"results written to {args.json}")
