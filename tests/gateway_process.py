"""A real gateway: uvicorn in a subprocess on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


def stub_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """A config whose only provider is in stub mode (its key variable is never set)."""
    return {
        "providers": {
            "openai": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "GW_TEST_UNSET_KEY"}
        },
        "aliases": {"default-chat": {"provider": "openai", "model": "gpt-4o-mini"}},
        "rate_limit": {"requests_per_minute": 100_000},
        "log_file": str(tmp_path / "logs" / "gateway.log"),
        **overrides,
    }


@contextmanager
def gateway_process(
    tmp_path: Path, config: dict[str, Any], *, workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Start ``uvicorn src.app:app`` on ``config``; yield its base URL; stop it at the end."""
    config_path = tmp_path / f"config-{time.monotonic_ns()}.json"
    config_path.write_text(json.dumps(config))
    port = free_port()
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS_"))},
        "GATEWAY_CONFIG": str(config_path),
        **(env or {}),
    }
    environment.pop("GW_TEST_UNSET_KEY", None)
    command = [sys.executable, "-m", "uvicorn", "src.app:app", "--host", "127.0.0.1",
               "--port", str(port), "--workers", str(workers), "--log-level", "warning"]  # fmt: skip
    log = open(tmp_path / f"uvicorn-{port}.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process, workers)
        yield base
    finally:
        stop_process(process)
        log.close()


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_ready(base: str, process: subprocess.Popen[bytes], workers: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {process.returncode}")
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                if workers > 1:
                    time.sleep(1.0)  # let every worker finish its start-up, not just the first
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("uvicorn did not become ready in 20 s")


class GatewayProcess:
    """Starts on ``start()``, stops (SIGTERM, then SIGKILL) on ``stop()``; stderr is kept."""

    def __init__(self, config_path: Path, env: dict[str, str] | None = None) -> None:
        self.config_path = config_path
        self.env = env or {}
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_path = config_path.with_suffix(".stderr")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> GatewayProcess:
        self.port = free_port()
        env = {**os.environ, "GATEWAY_CONFIG": str(self.config_path), **self.env}
        with self.stderr_path.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "src.app:app", "--port", str(self.port),
                 "--host", "127.0.0.1", "--log-level", "warning"],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.stderr()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"gateway did not start: {self.stderr()}")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def stderr(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""
