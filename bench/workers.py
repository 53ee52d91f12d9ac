"""Throughput from one uvicorn worker to two, per state backend, and whether limits stay exact.

    python bench/workers.py [--duration S] [--concurrency C] [--rounds R]

Starts the fake upstream and a private redis-server, then for each backend
(memory, redis) and each worker count (1, 2) a gateway with
``uvicorn --workers N`` (not pinned: two workers get both cores), and:

1. throughput: wrk, non-streamed, C connections, S seconds, with a limit far
   above the load; R rounds, the settings interleaved, median reported;
2. exactness: the limit set to L = a quarter of what the median round served
   in S seconds, wrk again for S seconds (every request from one client). L is
   reached early in the round, so every admitted request has its answer long
   before wrk stops: the 200s wrk counts are all the admissions.
   Exact means 200s == L; a per-process limit admits up to N x L.

wrk, the fake upstream and Redis share the machine with the gateway, as in a
two-core deployment that runs everything on one host. Markdown on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from launch import gateway_command
from servers import HOST, fail, free_port, managed, wait_for_port, wait_healthy
from wrkload import run_wrk

BENCH_DIR = Path(__file__).parent
REPO_ROOT = BENCH_DIR.parent
CHAT_PATH = "/v1/chat/completions"
UNLIMITED = 100_000_000


def config(upstream_port: int, tmp: Path, backend: str, redis_url: str, rpm: int) -> Path:
    state = {"backend": backend}
    if backend == "redis":
        # A fresh prefix per gateway, so every exactness round starts from an empty window.
        state |= {"redis_url": redis_url, "key_prefix": f"bench{time.monotonic_ns()}:"}
    data = {
        "providers": {
            "upstream": {
                "base_url": f"http://{HOST}:{upstream_port}/v1",
                "api_key_env": "BENCH_UPSTREAM_KEY",
            }
        },
        "aliases": {"default-chat": {"provider": "upstream", "model": "fake-model"}},
        "rate_limit": {"requests_per_minute": rpm},
        "log_file": str(tmp / "gateway.log"),
        "state": state,
    }
    path = tmp / f"gateway-{backend}-{rpm}.json"
    path.write_text(json.dumps(data))
    return path


def measure(
    config_path: Path, workers: int, tmp: Path, duration: int, conc: int, warm_up: bool
) -> tuple[int, int]:
    """(requests wrk completed, of which 200) for one gateway with ``workers`` workers."""
    port = free_port()
    env = {**os.environ, "GATEWAY_CONFIG": str(config_path), "BENCH_UPSTREAM_KEY": "bench-key"}
    env.pop("WEB_CONCURRENCY", None)
    log = tmp / "gateway.out"
    with managed(gateway_command(port, workers=workers), log, REPO_ROOT, env) as gateway:
        wait_healthy(gateway, port, time.perf_counter(), log)
        time.sleep(1)  # every worker up, not only the first to answer
        url = f"http://{HOST}:{port}{CHAT_PATH}"
        if warm_up:  # not before an exactness round: its admissions would go uncounted
            run_wrk(url, "nonstream", conc, 1, 1)
        result = run_wrk(url, "nonstream", conc, duration, 1)
    return result.requests, result.requests - result.errors.get("status", 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    binary = shutil.which("redis-server")
    if shutil.which("wrk") is None or binary is None:
        fail("needs wrk and redis-server on the PATH (apt-get install -y wrk redis-server)")
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="gateway-workers-") as tmp_name,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(tmp_name)
        upstream_port, redis_port = free_port(), free_port()
        cmd = [sys.executable, str(BENCH_DIR / "fake_upstream.py"), "--port", str(upstream_port)]
        upstream = stack.enter_context(managed(cmd, tmp / "upstream.out", REPO_ROOT))
        wait_for_port(upstream, upstream_port, "fake upstream", tmp / "upstream.out")
        cmd = [
            binary,
            "--port",
            str(redis_port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        redis = stack.enter_context(managed(cmd, tmp / "redis.out", REPO_ROOT))
        wait_for_port(redis, redis_port, "redis-server", tmp / "redis.out")
        redis_url = f"redis://{HOST}:{redis_port}/0"
        settings = [(backend, workers) for backend in ("memory", "redis") for workers in (1, 2)]
        rates: dict[tuple[str, int], list[float]] = {setting: [] for setting in settings}
        for index in range(args.rounds):  # settings interleaved, so drift hits all alike
            for backend, workers in settings:
                path = config(upstream_port, tmp, backend, redis_url, UNLIMITED)
                served, _ = measure(path, workers, tmp, args.duration, args.concurrency, True)
                rates[backend, workers].append(served / args.duration)
                progress(f"round {index + 1} {backend} x{workers}: {served / args.duration:,.0f}")
        for backend, workers in settings:
            rps = statistics.median(rates[backend, workers])
            # Reached within the first quarter of the round at the median rate.
            limit = max(1, int(rps * args.duration / 4))
            path = config(upstream_port, tmp, backend, redis_url, limit)
            sent, admitted = measure(path, workers, tmp, args.duration, args.concurrency, False)
            rows.append((backend, workers, rps, limit, sent, admitted))
            progress(f"{backend} x{workers}: limit {limit}, {admitted} admitted of {sent}")
    print(f"wrk -t1 -c{args.concurrency} -d{args.duration}s, non-streamed, median of")
    print(f"{args.rounds} rounds; exactness: one more round with the limit L\n")
    print("| backend | workers | req/s | limit L | requests sent | 200s | exact |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for backend, workers, rps, limit, sent, admitted in rows:
        if admitted == limit:
            exact = "yes"
        elif sent == admitted:
            exact = "not reached (load too low)"
        else:
            exact = f"no ({admitted / limit:.2f} x L)"
        print(f"| {backend} | {workers} | {rps:,.0f} | {limit} | {sent} | {admitted} | {exact} |")


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
