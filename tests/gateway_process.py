"""A real gateway: ``uvicorn src.app:app`` in a subprocess on a free loopback port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data))
    return path


class GatewayProcess:
    """Started with ``start()``; ``stop()`` ends it and returns what it wrote on stderr."""

    def __init__(self, config_path: Path, port: int, *uvicorn_args: str) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._config_path = config_path
        self._args = uvicorn_args
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr = config_path.parent / f"gateway-{port}.stderr"

    def start(self) -> None:
        env = {**os.environ, "GATEWAY_CONFIG": str(self._config_path)}
        env.pop("WEB_CONCURRENCY", None)
        with self._stderr.open("wb") as stderr:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "src.app:app", "--host", "127.0.0.1",
                 "--port", str(self.port), "--log-level", "warning", *self._args],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
            )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"gateway exited at start-up: {self.stderr()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gateway did not start: {self.stderr()}")

    def stderr(self) -> str:
        return self._stderr.read_text(errors="replace") if self._stderr.exists() else ""

    def stop(self) -> str:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        return self.stderr()
