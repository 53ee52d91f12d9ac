"""A real gateway: uvicorn in a subprocess on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import json
import os
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
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


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
