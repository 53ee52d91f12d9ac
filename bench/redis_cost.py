"""What one request costs the Redis it shares: server CPU and script calls per request.

    python bench/redis_cost.py [--requests N] [--concurrency C] [--clients K]

Starts a private ``redis-server`` (no persistence), builds the gateway in this
process on it (stub provider: no upstream), and sends N chat completions, C at
a time, spread over K keyed clients that each have a token limit and a daily
budget, so every request takes the whole admission (limit check, token
reservation, budget hold) and settlement (token reconcile, charge). Reports
the Redis server's CPU (``used_cpu_user`` + ``used_cpu_sys`` from ``INFO``)
and its script calls (``INFO commandstats``) per request, for each algorithm.

The gateway's own CPU is not measured here (it runs in this process, behind
an in-process transport): ``bench/run.py --state redis`` measures that.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from servers import HOST, fail, free_port  # noqa: E402


def start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        fail("needs redis-server on the PATH (apt-get install -y redis-server)")
    port = free_port()
    cmd = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://{HOST}:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with redis.Redis.from_url(url) as client:
                client.ping()
            return process, url
        except redis.ConnectionError:
            time.sleep(0.02)
    process.kill()
    fail("redis-server did not start")


def config(redis_url: str, log_dir: Path, clients: int, algorithm: str) -> dict[str, Any]:
    rate: dict[str, Any] = {"requests_per_minute": 10**8, "tokens_per_minute": 10**10}
    if algorithm != "default":
        rate["algorithm"] = algorithm
    return {
        "providers": {"stub": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "BENCH_UNSET"}},
        "aliases": {"default-chat": {"provider": "stub", "model": "m"}},
        "pricing": {"stub": {"m": {"input_usd_per_mtok": 1, "output_usd_per_mtok": 1}}},
        "rate_limit": rate,
        "clients": {
            f"client-{i}": {"key_sha256": _digest(i), "budget": {"usd_per_day": 10**6}}
            for i in range(clients)
        },
        "state": {"backend": "redis", "redis_url": redis_url, "key_prefix": "cost:"},
        "log_file": str(log_dir / "gateway.log"),
    }


def _key(i: int) -> str:
    return f"bench-cost-key-{i:04d}-padding-padding"


def _digest(i: int) -> str:
    return hashlib.sha256(_key(i).encode()).hexdigest()


def redis_usage(url: str) -> tuple[float, int]:
    """Server CPU seconds so far, and script calls (EVALSHA + EVAL) so far."""
    with redis.Redis.from_url(url) as client:
        cpu = client.info("cpu")
        stats = client.info("commandstats")
    calls = sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), calls


async def drive(
    redis_url: str, tmp: Path, requests: int, concurrency: int, clients: int, algorithm: str
) -> dict[str, float]:
    os.environ.pop("BENCH_UNSET", None)
    from src.config import parse_config
    from src.edge.app import create_app

    app = create_app(parse_config(config(redis_url, tmp, clients, algorithm)))
    body = {
        "model": "default-chat",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "hi"}],
    }
    headers = [{"authorization": f"Bearer {_key(i)}"} for i in range(clients)]
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:

            async def one(i: int) -> None:
                answer = await client.post(
                    "/v1/chat/completions", json=body, headers=headers[i % clients]
                )
                if answer.status_code != 200:
                    fail(f"request {i}: {answer.status_code} {answer.text[:200]}")

            await asyncio.gather(*(one(i) for i in range(concurrency)))  # warm-up
            await asyncio.sleep(0.3)
            cpu0, calls0 = redis_usage(redis_url)
            for start in range(0, requests, concurrency):
                await asyncio.gather(*(one(i) for i in range(start, start + concurrency)))
        # the lifespan's end flushes what is pending: counted too
    cpu1, calls1 = redis_usage(redis_url)
    return {
        "redis_cpu_us_per_request": (cpu1 - cpu0) * 1e6 / requests,
        "script_calls_per_request": (calls1 - calls0) / requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--algorithm", action="append", help="sliding_log, gcra (default: both)")
    args = parser.parse_args()
    algorithms = args.algorithm or ["sliding_log", "gcra"]
    with tempfile.TemporaryDirectory(prefix="redis-cost-") as name:
        tmp = Path(name)
        process, url = start_redis(tmp)
        try:
            for algorithm in algorithms:
                with redis.Redis.from_url(url) as client:
                    client.flushall()
                    client.config_resetstat()
                # the gateway echoes its request lines on stdout: not into this report
                with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
                    figures = asyncio.run(
                        drive(url, tmp, args.requests, args.concurrency, args.clients, algorithm)
                    )
                print(
                    f"{algorithm}: {args.requests} requests, concurrency {args.concurrency},"
                    f" {args.clients} client(s): Redis CPU"
                    f" {figures['redis_cpu_us_per_request']:.1f} us/request,"
                    f" {figures['script_calls_per_request']:.2f} script calls/request"
                )
        finally:
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
