"""Redis memory per client for each limiter algorithm.

    python bench/redis_memory.py [--clients N] [--requests R] [--tokens]

Starts a private ``redis-server`` (no persistence) and, for each algorithm,
admits R requests for each of N clients through the gateway's own admission
script, each client's limit being R per minute (so all R are admitted and
kept: a client at its limit), then reports the growth of Redis's
``used_memory`` per client. With ``--tokens`` the clients also have a token
limit (300 tokens a request; the sliding log then keeps each admission's
tokens too).

The fill must end within the 60-second window (a client's keys expire when
what it owes has passed), so N x R is bounded by the server's speed: a
client's figure does not depend on N, so measure a thousand clients and
multiply.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from servers import HOST, fail, free_port  # noqa: E402

from src.state.redis_scripts import ADMIT  # noqa: E402
from src.state.redis_store import slot_tag  # noqa: E402

BATCH = 1000


def start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], redis.Redis]:
    binary = shutil.which("redis-server")
    if binary is None:
        fail("needs redis-server on the PATH (apt-get install -y redis-server)")
    port = free_port()
    cmd = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host=HOST, port=port)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            client.ping()
            return process, client
        except redis.ConnectionError:
            time.sleep(0.02)
    process.kill()
    fail("redis-server did not start")


def fill(client: redis.Redis, algorithm: str, clients: int, requests: int, tokens: bool) -> float:
    """Admit ``requests`` for each of ``clients``, as the gateway would; seconds taken."""
    sha = client.script_load(ADMIT.source)
    rpm, tpm = requests, (300 * requests if tokens else -1)
    node, serial = os.urandom(6).hex(), itertools.count()
    started = time.monotonic()
    pipe = client.pipeline(transaction=False)
    for index in range(clients):
        tag = slot_tag(f"client-{index:06d}")
        keys = (f"gw:rl:{tag}", f"gw:spend:{tag}")
        for _ in range(requests):
            member = f"{node}.{next(serial)}"
            # ARGV as RedisState sends it: the limits, no budget step, no settlements
            args = (algorithm, rpm, tpm, 300, member, "", "0.0", "-1", "-1", 0)
            pipe.evalsha(sha, 2, *keys, *args)
            if len(pipe) >= BATCH:
                _check(pipe.execute())
    _check(pipe.execute())
    return time.monotonic() - started


def _check(replies: list[object]) -> None:
    if any(not isinstance(reply, list) or reply[0] != 1 for reply in replies):
        fail("an admission was refused: the limits must stay above the fill")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=1000, help="admissions per client")
    parser.add_argument("--tokens", action="store_true", help="the clients have a token limit")
    parser.add_argument("--algorithm", action="append", help="sliding_log, gcra (default: both)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="redis-memory-") as name:
        process, client = start_redis(Path(name))
        try:
            for algorithm in args.algorithm or ["sliding_log", "gcra"]:
                client.flushall()
                before = int(client.info("memory")["used_memory"])
                seconds = fill(client, algorithm, args.clients, args.requests, args.tokens)
                if seconds > 55:
                    fail(f"the fill took {seconds:.0f} s: keys expired; use fewer clients")
                after = int(client.info("memory")["used_memory"])
                per_client = (after - before) / args.clients
                print(
                    f"{algorithm}: {args.clients} clients x {args.requests} requests/min"
                    f"{' with a token limit' if args.tokens else ''}: {per_client:,.0f} bytes"
                    f" per client ({client.dbsize()} keys; filled in {seconds:.1f} s);"
                    f" 10,000 such clients: {per_client * 10_000 / 2**20:,.1f} MiB"
                )
        finally:
            client.close()
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
