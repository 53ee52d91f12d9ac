"""What a benchmark run measures and how it starts it: the fake upstream, a
private Redis and the gateway, each pinned to its cores and stopped when the
run ends; the targets (direct, gateway, another gateway) and the run's metadata.

The gateway's command line lives in ``gateway_command`` only, so that every
benchmark starts the gateway the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from servers import HOST, fail, free_port, managed, wait_for_port, wait_healthy

BENCH_DIR = Path(__file__).parent
REPO_ROOT = BENCH_DIR.parent
CHAT_PATH = "/v1/chat/completions"
UPSTREAM_KEY = "bench-key"
# The provider name in the generated config, for --gateway-config-extra overrides.
PROVIDER = "upstream"


@dataclass(frozen=True)
class Target:
    name: str
    url: str  # the chat-completions URL itself
    api_key: str | None = None
    pid: int | None = None  # known for the gateway a run starts, or when given


def other_target(url: str, api_key: str | None, pid: int | None = None) -> Target:
    """Another OpenAI-compatible gateway, on this machine only."""
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
    return Target("other", f"http://{host}:{parts.port}{path}", api_key, pid)


def add_stack_options(parser: argparse.ArgumentParser) -> None:
    """The options every run shares: another gateway to compare, the fake
    upstream's port, the gateway's state backend."""
    parser.add_argument(
        "--gateway-url", help="also measure this OpenAI-compatible gateway (loopback only)"
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


def backend_name(args: argparse.Namespace) -> str:
    """The state backend of the run, as the results name it."""
    return "redis-cluster" if args.state == "redis" and args.redis_cluster else str(args.state)


def host_meta() -> dict[str, object]:
    """When, on what and at which commit a run was made."""
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
        "cpu_model": cpu_model,
    }


@dataclass(frozen=True)
class Gateway:
    proc: subprocess.Popen[bytes]
    port: int
    startup_s: float  # launch to the first 200 on GET /healthz
    log: Path


def cpu_list(cpus: Collection[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def raise_open_files_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit, for this process and every
    server it starts (children inherit it): thousands of streams are
    thousands of sockets on each side. Returns the new soft limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1_048_576
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it, objects merged key by key."""
    merged = dict(base)
    for key, value in extra.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            merged[key] = merge(current, value)
        else:
            merged[key] = value
    return merged


def gateway_config(
    upstream_port: int,
    log_file: Path,
    redis_url: str | None,
    extra: Mapping[str, Any] | None = None,
    redis_mode: str = "standalone",
) -> dict[str, object]:
    state = {"backend": "redis", "redis_mode": redis_mode, "redis_url": redis_url}
    state |= {"key_prefix": "bench:"}
    config: dict[str, Any] = {
        "state": state if redis_url else {"backend": "memory"},
        "providers": {
            PROVIDER: {
                "type": "openai",
                "base_url": f"http://{HOST}:{upstream_port}/v1",
                "api_key_env": "BENCH_UPSTREAM_KEY",
                "timeout_s": 30,
            }
        },
        "aliases": {"default-chat": {"provider": PROVIDER, "model": "fake-model"}},
        # Far above anything one core can serve: the limiter must not shape the load.
        "rate_limit": {"requests_per_minute": 100_000_000, "tokens_per_minute": 100_000_000_000},
        "log_file": str(log_file),
    }
    return merge(config, extra or {})


def gateway_command(port: int, cpus: Collection[int] | None = None, workers: int = 1) -> list[str]:
    """The gateway as README starts it (``llm-gateway serve``, with its own HTTP
    layer), pinned to ``cpus`` when given; its config is ``GATEWAY_CONFIG``."""
    pin = ["taskset", "-c", cpu_list(cpus)] if cpus else []
    cmd = [*pin, sys.executable, "-m", "src", "serve", "--host", HOST, "--port", str(port)]
    cmd += ["--log-level", "warning"]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    return cmd


def start_gateway(
    stack: contextlib.ExitStack,
    config_path: Path,
    log: Path,
    cpus: Collection[int] | None = None,
    workers: int = 1,
) -> Gateway:
    """Start the gateway for the rest of ``stack`` and wait until it is healthy."""
    port = free_port()
    env = {**os.environ, "GATEWAY_CONFIG": str(config_path), "BENCH_UPSTREAM_KEY": UPSTREAM_KEY}
    # The worker count is the command line's alone.
    env.pop("WEB_CONCURRENCY", None)
    started_at = time.perf_counter()
    proc = stack.enter_context(managed(gateway_command(port, cpus, workers), log, REPO_ROOT, env))
    startup_s = wait_healthy(proc, port, started_at, log)
    return Gateway(proc, port, startup_s, log)


def start_fake_upstream(
    stack: contextlib.ExitStack,
    log: Path,
    cpu: int,
    port: int | None = None,
    options: list[str] | None = None,
) -> tuple[subprocess.Popen[bytes], int]:
    """``bench/fake_upstream.py`` pinned to ``cpu``; returns it and its port."""
    port = port or free_port()
    cmd = ["taskset", "-c", str(cpu), sys.executable, str(BENCH_DIR / "fake_upstream.py")]
    cmd += ["--port", str(port), *(options or [])]
    upstream = stack.enter_context(managed(cmd, log, REPO_ROOT))
    wait_for_port(upstream, port, "fake upstream", log)
    return upstream, port


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
    """A private redis-server (no persistence) pinned to ``cpu``; with ``cluster``, three of
    them made one Redis Cluster (``--redis-cluster``). Returns the URL of one node."""
    binary = shutil.which("redis-server")
    if binary is None:
        fail("the redis backend needs redis-server on the PATH (apt-get install -y redis-server)")
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


def write_config(path: Path, config: Mapping[str, object]) -> Path:
    path.write_text(json.dumps(config, indent=2))
    return path
