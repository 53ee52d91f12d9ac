"""Benchmark the gateway against a fake upstream, direct vs through the gateway.

    python bench/run.py [--duration S] [--rounds N] [--quick] [--soak N]
                        [--gateway-url URL] [--json FILE]
    python bench/run.py --streams [N,N,...] [options]   (bench/streams.py)

The gateway (uvicorn src.app:app, one worker) is pinned to one core; the fake
upstream, wrk, the TTFT probe and this script share the other. Rounds go
direct, gateway (, other) back to back so that each gateway figure has a
direct figure taken moments before it. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import streams
from launch import (
    CHAT_PATH,
    Target,
    add_stack_options,
    backend_name,
    gateway_config,
    host_meta,
    other_target,
    start_fake_upstream,
    start_gateway,
    start_redis,
    write_config,
)
from probe import NONSTREAM_BODY, STREAM_BODY, HttpProbe
from procstat import RssSampler, cpu_seconds, rss_kib
from report import (
    DIRECT,
    GATEWAY,
    MODES,
    Results,
    Round,
    Soak,
    SoakPoint,
    Ttft,
    markdown,
    mib,
    percentile,
    to_json,
)
from servers import HOST, ensure_running, fail, progress
from wrkload import run_wrk

SOAK_CONCURRENCY = 16
SOAK_CHUNK_S = 5
# Hard bound on a soak, whatever N is asked for.
SOAK_MAX_S = 1800.0
TTFT_BUDGET_S = 60.0


@dataclass(frozen=True)
class Plan:
    duration_s: int
    rounds: int
    concurrency: tuple[int, ...]
    warmup_s: int
    ttft_samples: int


def check_target(target: Target) -> None:
    """One request of each kind, so a misconfigured target fails loudly now
    instead of filling the table with error counts."""
    probe = HttpProbe(target.url, target.api_key)
    try:
        plain = probe.post(NONSTREAM_BODY)
        if plain.status != 200 or not json.loads(plain.body).get("choices"):
            fail(f"{target.name}: non-streamed request got {plain.status}: {plain.body[:300]!r}")
        stream = probe.post(STREAM_BODY)
        if (
            stream.status != 200
            or stream.first_data_s is None
            or b"data: [DONE]" not in stream.body
        ):
            fail(f"{target.name}: streamed request got {stream.status}: {stream.body[:300]!r}")
    except OSError as exc:
        fail(f"{target.name} at {target.url}: {exc}")
    finally:
        probe.close()


def measure_ttft(targets: list[Target], samples: int) -> Ttft:
    """Sequential streamed requests at c=1, alternating targets request by
    request (order flipped every pair) so that drift hits all alike."""
    probes = {t.name: HttpProbe(t.url, t.api_key) for t in targets}
    times: dict[str, list[float]] = {name: [] for name in probes}
    deadline = time.monotonic() + TTFT_BUDGET_S
    try:
        for i in range(samples + 5):  # the first 5 are warm-up
            if time.monotonic() > deadline:
                break
            names = list(probes) if i % 2 == 0 else list(reversed(probes))
            for name in names:
                result = probes[name].post(STREAM_BODY)
                if result.status != 200 or result.first_data_s is None:
                    fail(f"TTFT probe: {name} answered {result.status} without a data: event")
                if i >= 5:
                    times[name].append(result.first_data_s * 1000)
    finally:
        for probe in probes.values():
            probe.close()
    p50 = {name: percentile(v, 50) for name, v in times.items()}
    return Ttft(
        samples=len(times[DIRECT]),
        p50_ms=p50,
        p99_ms={name: percentile(v, 99) for name, v in times.items()},
        added_p50_ms={name: v - p50[DIRECT] for name, v in p50.items() if name != DIRECT},
    )


def run_rounds(
    plan: Plan, targets: list[Target], load_cpu: int, sampler: RssSampler, alive: Callable[[], None]
) -> list[Round]:
    rounds = []
    for index in range(plan.rounds):
        for mode in MODES:
            for concurrency in plan.concurrency:
                for target in targets:
                    pid = target.pid
                    cpu_before = cpu_seconds(pid) if pid else 0.0
                    started = time.monotonic()
                    result = run_wrk(
                        target.url, mode, concurrency, plan.duration_s, load_cpu, target.api_key
                    )
                    alive()
                    cpu_used = cpu_seconds(pid) - cpu_before if pid else None
                    peak = sampler.peak_kib(started, time.monotonic()) if pid else None
                    rounds.append(
                        Round(index, mode, concurrency, target.name, result, cpu_used, peak)
                    )
                    progress(
                        f"round {index + 1}/{plan.rounds} {mode:9} c={concurrency:<3} "
                        f"{target.name:8} {result.rps:9,.0f} req/s  "
                        f"p50 {result.p50_ms:7.3f} ms  p99 {result.p99_ms:7.3f} ms"
                        + (f"  errors {result.errors}" if result.error_count else "")
                    )
    return rounds


def soak(target: Target, total: int, load_cpu: int, alive: Callable[[], None]) -> Soak:
    """``total`` requests through the gateway in wrk chunks of a few seconds
    (wrk cannot stop at a count), alternating non-streamed and streamed,
    with RSS read after each chunk."""
    assert target.pid is not None
    before = rss_kib(target.pid)
    points = [SoakPoint(0, mib(before))]
    cpu_before = cpu_seconds(target.pid)
    served = errors = chunk = 0
    # Per mode: streamed requests cost more, and the last chunk is sized
    # from the rate so that the soak does not overshoot N by much.
    rates: dict[str, float] = {}
    started = time.monotonic()
    while served < total and time.monotonic() - started < SOAK_MAX_S:
        mode = MODES[chunk % 2]
        remaining = total - served
        duration = SOAK_CHUNK_S
        if mode in rates:
            duration = max(1, min(SOAK_CHUNK_S, math.ceil(remaining / rates[mode])))
        result = run_wrk(target.url, mode, SOAK_CONCURRENCY, duration, load_cpu, target.api_key)
        alive()
        if result.requests == 0:
            fail(f"soak: the gateway served nothing in {duration} s ({result.errors})")
        chunk += 1
        served += result.requests
        errors += result.error_count
        rates[mode] = result.rps
        points.append(SoakPoint(served, mib(rss_kib(target.pid))))
        progress(f"soak {served:,}/{total:,} RSS {points[-1].rss_mib:.1f} MiB")
    cpu_us_per_request = (cpu_seconds(target.pid) - cpu_before) / served * 1e6
    time.sleep(1)  # let in-flight work finish and buffers go back before the final reading
    return Soak(
        requested=total,
        served=served,
        errors=errors,
        concurrency=SOAK_CONCURRENCY,
        cpu_us_per_request=cpu_us_per_request,
        rss_before_mib=mib(before),
        rss_after_mib=mib(rss_kib(target.pid)),
        points=points,
    )


def meta(
    plan: Plan, cores: tuple[int, int], other_url: str | None, state: str
) -> dict[str, object]:
    wrk_version = subprocess.run(
        ["wrk", "--version"], capture_output=True, text=True, check=False
    ).stdout
    return {
        **host_meta(),
        "wrk": wrk_version.splitlines()[0] if wrk_version else None,
        "gateway_cpu": cores[0],
        "load_cpu": cores[1],
        "duration_s": plan.duration_s,
        "rounds": plan.rounds,
        "concurrency": list(plan.concurrency),
        "other_gateway_url": other_url,
        "state_backend": state,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk round (default 5)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternating rounds per setting (default 3; 0 skips them)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run for CI: 1 s rounds, c=1 and 16, one round"
    )
    parser.add_argument(
        "--ttft-samples", type=int, default=200, help="streamed requests per target for TTFT"
    )
    parser.add_argument(
        "--soak",
        type=int,
        metavar="N",
        help="also send N requests through the gateway and report RSS",
    )
    add_stack_options(parser)
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    parser.add_argument(
        "--streams",
        nargs="?",
        metavar="N,N,...",
        help="many-streams mode instead; its options: python bench/run.py --streams --help",
    )
    args = parser.parse_args()
    if args.duration < 1 or args.rounds < 0 or (args.soak is not None and args.soak < 1):
        parser.error("--duration and --soak must be >= 1, --rounds >= 0")
    return args


def main() -> None:
    if any(arg == "--streams" or arg.startswith("--streams=") for arg in sys.argv[1:]):
        streams.main(sys.argv[1:])
        return
    args = parse_args()
    plan = (
        Plan(duration_s=1, rounds=1, concurrency=(1, 16), warmup_s=1, ttft_samples=20)
        if args.quick
        else Plan(
            args.duration, args.rounds, (1, 16, 64), warmup_s=2, ttft_samples=args.ttft_samples
        )
    )
    if shutil.which("wrk") is None:
        fail("wrk not found; install it with: apt-get install -y wrk")
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        fail("needs two CPU cores: one for the gateway, one for the load")
    cores = (available[0], available[1])
    other = other_target(args.gateway_url, args.gateway_key) if args.gateway_url else None
    # Everything this script runs, bar the gateway, shares the load core.
    os.sched_setaffinity(0, {cores[1]})
    # SIGTERM/SIGHUP unwind like Ctrl-C, so the finally blocks stop the servers.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))

    with (
        tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp_name,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(tmp_name)
        upstream, upstream_port = start_fake_upstream(
            stack, tmp / "upstream.out", cores[1], args.upstream_port
        )
        redis_url = (
            start_redis(stack, tmp, cores[1], args.redis_cluster) if args.state == "redis" else None
        )
        mode = "cluster" if args.redis_cluster else "standalone"
        config = gateway_config(upstream_port, tmp / "gateway.log", redis_url, redis_mode=mode)
        config_path = write_config(tmp / "gateway.json", config)
        gateway = start_gateway(stack, config_path, tmp / "gateway.out", {cores[0]})
        startup_s = gateway.startup_s
        progress(f"gateway pid {gateway.proc.pid} healthy after {startup_s:.2f} s")

        targets = [
            Target(DIRECT, f"http://{HOST}:{upstream_port}{CHAT_PATH}"),
            Target(GATEWAY, f"http://{HOST}:{gateway.port}{CHAT_PATH}", pid=gateway.proc.pid),
        ]
        if other is not None:
            targets.append(other)
        for target in targets:
            check_target(target)
        # "Idle" = started and has served one request of each kind (so lazy
        # imports and pools exist), but no load yet.
        results = Results(
            meta(plan, cores, other.url if other else None, backend_name(args)),
            startup_s,
            mib(rss_kib(gateway.proc.pid)),
        )

        def alive() -> None:
            ensure_running(upstream, "fake upstream", tmp / "upstream.out")
            ensure_running(gateway.proc, "gateway", gateway.log)

        sampler = RssSampler(gateway.proc.pid)
        sampler.start()
        stack.callback(sampler.stop)

        # Warm-up: connection pools, allocator arenas and caches fill here, not
        # in the first measured round or soak chunk.
        for target in targets:
            for mode in MODES:
                run_wrk(target.url, mode, 16, plan.warmup_s, cores[1], target.api_key)
                alive()
        if plan.rounds:
            results.rounds = run_rounds(plan, targets, cores[1], sampler, alive)
            results.ttft = measure_ttft(targets, plan.ttft_samples)
        if args.soak:
            results.soak = soak(targets[1], args.soak, cores[1], alive)

    print(markdown(results))
    if args.json:
        args.json.write_text(json.dumps(to_json(results), indent=2) + "\n")
        progress(f"results written to {args.json}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        # The servers were already stopped on the way out of main().
        sys.exit("bench: interrupted")
