"""The hostile suite's real parts: the gateway as a uvicorn process, its upstreams, its exposure.

``HostileGateway`` starts ``python -m uvicorn src.app:app`` on a free loopback
port with a config whose providers all point at one ``FaultyUpstream`` and whose
keys are canaries; its stdout and stderr go to files. ``Exposure`` collects
everything the gateway said to anyone (answers, headers, log lines, stdout,
stderr) so the secrets test can scan the whole suite's traffic at the end.

``SCALE`` (environment ``HOSTILE_SCALE``, default 1) multiplies the case counts:
the default run is sized for CI; ``HOSTILE_SCALE=10`` gives the figures in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
SCALE = max(1, int(os.environ.get("HOSTILE_SCALE", "1")))

# Canaries: random per run, URL-safe letters so no 8-character piece looks like a request id.
PROVIDER_KEY = "sk-canary-" + secrets.token_urlsafe(24)
AZURE_KEY = "az-canary-" + secrets.token_urlsafe(24)
ANTHROPIC_KEY = "sk-ant-canary-" + secrets.token_urlsafe(24)
CLIENT_KEY = "gw-client-canary-" + secrets.token_urlsafe(24)
ADMIN_KEY = "gw-admin-canary-" + secrets.token_urlsafe(24)
CANARIES = (PROVIDER_KEY, AZURE_KEY, ANTHROPIC_KEY, CLIENT_KEY, ADMIN_KEY)
_PIECE = 8
_REQUEST_ID = re.compile(r"gw-[0-9a-f]{12}")


def scaled(count: int) -> int:
    return count * SCALE


def keyed(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with one client, ``alice``, whose key is the client canary."""
    digest = hashlib.sha256(CLIENT_KEY.encode()).hexdigest()
    return {**config, "clients": {"alice": {"key_sha256": digest}}}


def gateway_config(upstream_base: str, log_file: Path, **overrides: Any) -> dict[str, Any]:
    origin = upstream_base.removesuffix("/v1")
    config: dict[str, Any] = {
        "providers": {
            "up": {
                "type": "openai",
                "base_url": upstream_base,
                "api_key_env": "HOSTILE_KEY",
                "timeout_s": 2,
            },
            "az": {
                "type": "azure",
                "base_url": origin,
                "api_key_env": "HOSTILE_AZURE_KEY",
                "api_version": "2024-10-21",
                "timeout_s": 2,
            },
            "anth": {
                "type": "anthropic",
                "base_url": upstream_base,
                "api_key_env": "HOSTILE_ANTHROPIC_KEY",
                "timeout_s": 2,
            },
        },
        "aliases": {
            "chat": {"provider": "up", "model": "m1"},
            "az": {"provider": "az", "model": "dep1"},
            "anth": {"provider": "anth", "model": "claude-x"},
        },
        "rate_limit": {"requests_per_minute": 10_000_000},
        "retry": {"max_attempts": 3, "base_backoff_s": 0.05, "max_backoff_s": 0.2},
        "breaker": {"failure_threshold": 1_000_000, "cooldown_s": 1},
        "deadline_s": 4,
        "retry_after_cap_s": 1.5,
        "request_read_timeout_s": 2,
        "shutdown_drain_s": 1,
        "log_file": str(log_file),
        "ledger_file": str(log_file.parent / "spend.ledger"),
    }
    config.update(overrides)
    return config


@dataclass
class HostileGateway:
    """A real gateway process; ``stop`` sends SIGTERM and returns the exit code."""

    home: Path
    config: dict[str, Any]
    extra_args: tuple[str, ...] = ("--http", "src.edge.protocol:GatewayProtocol")
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return Path(self.config["log_file"])

    @property
    def stdout_file(self) -> Path:
        return self.home / "stdout"

    @property
    def stderr_file(self) -> Path:
        return self.home / "stderr"

    def start(self) -> HostileGateway:
        self.home.mkdir(parents=True, exist_ok=True)
        config_path = self.home / "config.json"
        config_path.write_text(json.dumps(self.config))
        self.port = free_port()
        env = {
            **os.environ,
            "GATEWAY_CONFIG": str(config_path),
            "HOSTILE_KEY": PROVIDER_KEY,
            "HOSTILE_AZURE_KEY": AZURE_KEY,
            "HOSTILE_ANTHROPIC_KEY": ANTHROPIC_KEY,
            "GATEWAY_ADMIN_KEY": ADMIN_KEY,
        }
        with self.stdout_file.open("wb") as out, self.stderr_file.open("wb") as err:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "src.app:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    *self.extra_args,
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=err,
            )
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited: {self.stderr_file.read_text()[-2000:]}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start within 20 s")
            time.sleep(0.05)

    def stop(self, timeout: float = 15) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def log_lines(self) -> list[dict[str, Any]]:
        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_bytes().splitlines()]


@dataclass
class Exposure:
    """Everything the gateway showed anyone during the suite, for the secrets scan."""

    texts: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def answer(self, response: httpx.Response) -> None:
        self.texts.append(response.text)
        self.texts.append(json.dumps(dict(response.headers)))

    def text(self, value: str) -> None:
        self.texts.append(value)

    def everything(self) -> Iterable[str]:
        yield from self.texts
        for path in self.files:
            if path.exists():
                yield path.read_bytes().decode("utf-8", "replace")


def secret_forms(secret: str) -> list[str]:
    """The secret, every 8-character piece of it, and its SHA-256 (hex) and pieces of that."""
    digest = hashlib.sha256(secret.encode()).hexdigest()
    pieces = [secret[i : i + _PIECE] for i in range(len(secret) - _PIECE + 1)]
    hashed = [digest[i : i + _PIECE] for i in range(len(digest) - _PIECE + 1)]
    return [secret, digest, *pieces, *hashed]


def leaks(texts: Iterable[str], secrets_: Iterable[str]) -> list[tuple[str, str]]:
    """(form, context) for every form of a secret found in ``texts``."""
    forms = {form for secret in secrets_ for form in secret_forms(secret)}
    # Request ids are random hex, so a piece of a hex digest could show up in one by chance.
    found = []
    for text in texts:
        cleaned = _REQUEST_ID.sub("gw-", text)
        for form in forms:
            at = cleaned.find(form)
            if at >= 0:
                found.append((form, cleaned[max(0, at - 60) : at + 60]))
    return found


def is_envelope(status: int, body: bytes, path: str) -> bool:
    """The gateway's error envelope in the dialect of ``path``."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    if path.startswith("/v1/messages"):
        return (
            isinstance(data, dict)
            and data.get("type") == "error"
            and isinstance(data.get("error"), dict)
            and isinstance(data["error"].get("message"), str)
        )
    error = data.get("error") if isinstance(data, dict) else None
    return (
        isinstance(error, dict)
        and isinstance(error.get("type"), str)
        and isinstance(error.get("message"), str)
    )


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[tuple[str, asyncio.AbstractEventLoop]]:
    """Serve ``app`` with uvicorn (the gateway's protocol) in a thread; yields its URL and loop.

    In-process, so a test can read the app's attributes (``in_flight``) and the
    server loop's tasks; the sockets are real.
    """
    import uvicorn

    from src.edge.protocol import GatewayProtocol

    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        http=GatewayProtocol,
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="gateway-in-thread", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", server.servers[0].get_loop()
    finally:
        server.should_exit = True
        thread.join(10)
