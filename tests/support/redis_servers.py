"""Real Redis for the tests: the one at ``REDIS_URL``, or a ``redis-server`` the tests start.

Without either the Redis tests skip, saying how to get one; with
``GATEWAY_REQUIRE_REDIS=1`` (CI) that skip is a failure instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRED = os.environ.get("GATEWAY_REQUIRE_REDIS") == "1"
HOW_TO_GET_ONE = (
    "install a Redis server (e.g. `apt-get install redis-server`, `brew install redis`, "
    "or `docker run -p 6379:6379 redis`) or point REDIS_URL at one"
)


def unavailable(reason: str) -> None:
    """Skip, or fail when CI requires the Redis tests to run."""
    if REQUIRED:
        pytest.fail(f"{reason} (GATEWAY_REQUIRE_REDIS=1: Redis tests must not skip)", pytrace=False)
    pytest.skip(reason)


def answers(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5) as client:
            return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def has_redis_server() -> bool:
    return shutil.which("redis-server") is not None


def redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable(f"no redis-server on PATH to start a private Redis: {HOW_TO_GET_ONE}")
    assert binary is not None
    return binary


class RedisServer:
    """A throwaway ``redis-server`` on its own port, no persistence; can be stopped and restarted."""

    def __init__(self, binary: str, port: int) -> None:
        self.binary = binary
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not answers(self.url):
            if time.monotonic() > deadline or self._process.poll() is not None:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._process = None


def delete_prefix(url: str, prefix: str) -> None:
    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


def new_prefix() -> str:
    return f"gwtest:{uuid.uuid4().hex[:12]}:"


def prefix_for(url: str) -> Iterator[str]:
    """A key prefix of its own, and its keys deleted afterwards."""
    prefix = new_prefix()
    yield prefix
    delete_prefix(url, prefix)
