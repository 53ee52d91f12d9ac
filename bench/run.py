"""Benchmark the gateway against a fake upstream, direct vs through the gateway.

    python bench/run.py [--duration S] [--rounds N] [--quick] [--soak N]
                        [--gateway-url URL] [--json FILE]

The gateway (uvicorn src.app:app, one worker) is pinned to one core; the fake
upstream, wrk, the TTFT probe and this script share the other. Rounds go
direct, gateway (, other) back to back so that each gateway figure has a
direct figure taken moments before it. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

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
from servers import HOST, ensure_running, fail, free_port, managed, wait_for_port, wait_healthy
from wrkload import run_wrk

BENCH_DIR = Path(__file__).parent
REPO_ROOT = BENCH_DIR.parent
CHAT_PATH = "/v1/chat/completions"
UPSTREAM_KEY = "bench-key"
SOAK_CONCURRENCY = 16
SOAK_CHUNK_S = 5
# Hard bound on a soak, whatever N is asked for.
SOAK_MAX_S = 1800.0
TTFT_BUDGET_S = 60.0


@dataclass(frozen=True)
class Target:
    name: str
    url: str  # the chat-completions URL itself
    api_key: str | None = None
    pid: int | None = None  # only known for the gateway this script starts


@dataclass(frozen=True)
class Plan:
    duration_s: int
    rounds: int
    concurrency: tuple[int, ...]
    warmup_s: int
    ttft_samples: int


def progress(message: str) -> None:
    # Progress goes to stderr so that stdout is only the markdown report.
    print(message, file=sys.stderr, flush=True)


def gateway_config(
    upstream_port: int, log_file: Path, redis_url: str | None, redis_mode: str = "standalone"
) -> dict[str, object]:
    state = {"backend": "redis", "redis_mode": redis_mode, "redis_url": redis_url}
    state |= {"key_prefix": "bench:"}
    return {
        "state": state if redis_url else {"backend": "memory"},
        "providers": {
            "upstream": {
                "type": "openai",
                "base_url": f"http://{HOST}:{upstream_port}/v1",
                "api_key_env": "BENCH_UPSTREAM_KEY",
                "timeout_s": 30,
            }
        },
        "aliases": {"default-chat": {"provider": "upstream", "model": "fake-model"}},
        # Far above anything one core can serve: the limiter must not shape the load.
        "rate_limit": {"requests_per_minute": 100_000_000, "tokens_per_minute": 100_000_000_000},
        "log_file": str(log_file),
    }


def other_target(url: str, api_key: str | None) -> Target:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    # Load is only ever generated against this machine.
    if parts.scheme != "http" or not loopback or parts.port is None:
        fail(f"--gateway-url must be http://<loopback address>:<port>[/v1], got {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith(CHAT_PATH):
        path += "/chat/completions" if path.endswith("/v1") else CHAT_PATH
    return Target("other", f"http://{host}:{parts.port}{path}", api_key)


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
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT, check=False
    )
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": commit.stdout.strip() or None,
        "python": platform.python_version(),
        "wrk": wrk_version.splitlines()[0] if wrk_version else None,
        "cpu_model": cpu_model,
        "gateway_cpu": cores[0],
        "load_cpu": cores[1],
        "duration_s": plan.duration_s,
        "rounds": plan.rounds,
        "concurrency": list(plan.concurrency),
        "other_gateway_url": other_url,
        "state_backend": state,
    }


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        with socket.socket() as bus:
            try:
                bus.bind((HOST, port + 10_000))
            except (OSError, OverflowError):
                continue
        return port


def start_redis(stack: contextlib.ExitStack, tmp: Path, cpu: int, cluster: bool = False) -> str:
    """A private redis-server (no persistence) on the load core, for ``--state redis``; with
    ``cluster``, three of them made one Redis Cluster (``--redis-cluster``)."""
    binary = shutil.which("redis-server")
    if binary is None:
        fail("--state redis needs redis-server on the PATH (apt-get install -y redis-server)")
    ports = []
    for index in range(3 if cluster else 1):
        port = free_cluster_port() if cluster else free_port()
        log = tmp / f"redis-{index}.out"
        cmd = ["taskset", "-c", str(cpu), binary, "--port", str(port), "--bind", HOST]
        cmd += ["--save", "", "--appendonly", "no", "--dir", str(tmp)]
        if cluster:
            cmd += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"]
        redis = stack.enter_context(managed(cmd, log, REPO_ROOT))
        wait_for_port(redis, port, "redis-server", log)
        ports.append(port)
    if cluster:
        cli = shutil.which("redis-cli") or fail("--redis-cluster needs redis-cli on the PATH")
        nodes = [f"{HOST}:{port}" for port in ports]
        create = [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"]
        subprocess.run(create, check=True, capture_output=True, timeout=60)
        check = [cli, "--cluster", "check", nodes[0]]
        deadline = time.monotonic() + 30
        while subprocess.run(check, capture_output=True, check=False).returncode != 0:
            if time.monotonic() > deadline:
                fail("the Redis Cluster did not become ready within 30 s")
            time.sleep(0.2)
    return f"redis://{HOST}:{ports[0]}/0"


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
    parser.add_argument(
        "--gateway-url", help="also benchmark this OpenAI-compatible gateway (loopback only)"
    )
    parser.add_argument("--gateway-key", help="bearer key sent to --gateway-url")
    parser.add_argument(
        "--upstream-port", type=int, help="fixed fake upstream port, for --gateway-url's config"
    )
    parser.add_argument(
        "--state",
        choices=("memory", "redis"),
        default="memory",
        help="the gateway's state backend; redis starts a private redis-server on the load core",
    )
    parser.add_argument(
        "--redis-cluster",
        action="store_true",
        help="with --state redis: a Redis Cluster of three primaries instead of one server",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    args = parser.parse_args()
    if args.redis_cluster and args.state != "redis":
        parser.error("--redis-cluster needs --state redis")
    if args.duration < 1 or args.rounds < 0 or (args.soak is not None and args.soak < 1):
        parser.error("--duration and --soak must be >= 1, --rounds >= 0")
    return args


def main() -> None:
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
        upstream_port = args.upstream_port or free_port()
        upstream_log = tmp / "upstream.out"
        cmd = ["taskset", "-c", str(cores[1]), sys.executable, str(BENCH_DIR / "fake_upstream.py")]
        cmd += ["--port", str(upstream_port)]
        upstream = stack.enter_context(managed(cmd, upstream_log, REPO_ROOT))
        wait_for_port(upstream, upstream_port, "fake upstream", upstream_log)

        redis_url = None
        if args.state == "redis":
            redis_url = start_redis(stack, tmp, cores[1], args.redis_cluster)
        mode = "cluster" if args.redis_cluster else "standalone"
        backend_name = "redis-cluster" if args.redis_cluster else args.state
        config_path = tmp / "gateway.json"
        config_path.write_text(
            json.dumps(
                gateway_config(upstream_port, tmp / "gateway.log", redis_url, mode), indent=2
            )
        )
        gateway_port = free_port()
        gateway_log = tmp / "gateway.out"
        env = {**os.environ, "GATEWAY_CONFIG": str(config_path), "BENCH_UPSTREAM_KEY": UPSTREAM_KEY}
        cmd = ["taskset", "-c", str(cores[0]), sys.executable, "-m", "uvicorn", "src.app:app"]
        # The gateway as README starts it: with its own HTTP layer (slow-client cut, head limit).
        cmd += ["--http", "src.edge.protocol:GatewayProtocol"]
        cmd += ["--host", HOST, "--port", str(gateway_port), "--no-access-log"]
        started_at = time.perf_counter()
        gateway = stack.enter_context(managed(cmd, gateway_log, REPO_ROOT, env))
        startup_s = wait_healthy(gateway, gateway_port, started_at, gateway_log)
        progress(f"gateway pid {gateway.pid} healthy after {startup_s:.2f} s")

        targets = [
            Target(DIRECT, f"http://{HOST}:{upstream_port}{CHAT_PATH}"),
            Target(GATEWAY, f"http://{HOST}:{gateway_port}{CHAT_PATH}", pid=gateway.pid),
        ]
        if other is not None:
            targets.append(other)
        for target in targets:
            check_target(target)
        # "Idle" = started and has served one request of each kind (so lazy
        # imports and pools exist), but no load yet.
        results = Results(
            meta(plan, cores, other.url if other else None, backend_name),
            startup_s,
            mib(rss_kib(gateway.pid)),
        )

        def alive() -> None:
            ensure_running(upstream, "fake upstream", upstream_log)
            ensure_running(gateway, "gateway", gateway_log)

        sampler = RssSampler(gateway.pid)
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
