"""The one way tests run the gateway on a real socket: a process, or the app in a thread.

``GatewayProcess`` starts the gateway as a user does, ``python -m src serve
--config PATH --port P`` (the gateway's own HTTP layer), or, for the tests that
prove the seed's command, ``python -m uvicorn src.app:app`` with
``GATEWAY_CONFIG``. It waits for ``/healthz``, keeps stdout and stderr in
files, and stops with SIGTERM, then SIGKILL. Use it as a context manager or
through the ``launch_gateway`` fixture (stopped at the end of the test).

``serve_in_thread`` serves an app object under uvicorn in a thread of this
process, for tests that read the app's state or the server loop's tasks while
real sockets carry the traffic.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, NamedTuple, Self

import httpx

from tests.support import ROOT
from tests.support.loopback import free_port

Command = Literal["serve", "uvicorn"]


class GatewayDidNotStart(RuntimeError):
    """The process exited, or never answered ``/healthz``; the message ends with its stderr."""


class GatewayProcess:
    """A gateway process on a free loopback port.

    ``config`` is a dict (written to a new folder under ``home``) or the path
    of a config file the test keeps editing (for reloads). The process gets
    this environment without its ``OTEL_*`` and ``PROMETHEUS_*`` variables (a
    test sets those in ``env`` when it means them) and without ``unset``, plus ``env``.
    """

    def __init__(
        self,
        config: dict[str, Any] | Path,
        home: Path,
        *,
        command: Command = "serve",
        workers: int = 1,
        env: dict[str, str] | None = None,
        unset: tuple[str, ...] = (),
        log_level: str = "warning",
    ) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home = Path(tempfile.mkdtemp(prefix="gateway-", dir=home))
        if isinstance(config, Path):
            self.config_path = config
        else:
            self.config_path = self.home / "config.json"
            self.config_path.write_text(json.dumps(config))
        self.command = command
        self.workers = workers
        self.env = env or {}
        self.unset = unset
        self.log_level = log_level
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout_file(self) -> Path:
        return self.home / "stdout"

    @property
    def stderr_file(self) -> Path:
        return self.home / "stderr"

    @property
    def log_file(self) -> Path:
        """The telemetry log the config names."""
        return Path(json.loads(self.config_path.read_text())["log_file"])

    def argv(self) -> list[str]:
        port, workers = str(self.port), str(self.workers)
        common = ["--port", port, "--workers", workers, "--log-level", self.log_level]
        if self.command == "serve":
            return [
                sys.executable,
                "-m",
                "src",
                "serve",
                "--config",
                str(self.config_path),
                *common,
            ]
        return [sys.executable, "-m", "uvicorn", "src.app:app", "--host", "127.0.0.1", *common]

    def start(self, timeout_s: float = 20.0) -> Self:
        self.port = free_port()
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OTEL_", "PROMETHEUS_")) and k not in self.unset
        }
        environment = {**inherited, "GATEWAY_CONFIG": str(self.config_path), **self.env}
        with self.stdout_file.open("ab") as out, self.stderr_file.open("ab") as err:
            self.process = subprocess.Popen(
                self.argv(), cwd=ROOT, env=environment, stdout=out, stderr=err
            )
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise GatewayDidNotStart(
                    f"the gateway exited with {self.process.returncode}: {self.stderr()[-2000:]}"
                )
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise GatewayDidNotStart(
                    f"no answer on /healthz within {timeout_s} s: {self.stderr()[-2000:]}"
                )
            time.sleep(0.05)
        if self.workers > 1:
            time.sleep(1.0)  # let every worker finish its start-up, not just the first

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; the exit code (``None`` if never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def stdout(self) -> str:
        return self.stdout_file.read_text(errors="replace") if self.stdout_file.exists() else ""

    def stderr(self) -> str:
        return self.stderr_file.read_text(errors="replace") if self.stderr_file.exists() else ""

    def log_lines(self) -> list[dict[str, Any]]:
        """The telemetry lines written so far, parsed."""
        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_bytes().splitlines()]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def running_gateway(
    config: dict[str, Any] | Path, home: Path, **options: Any
) -> Iterator[GatewayProcess]:
    """A started ``GatewayProcess`` for the block (options as ``GatewayProcess`` takes them)."""
    with GatewayProcess(config, home, **options) as gateway:
        yield gateway


class Served(NamedTuple):
    url: str
    loop: asyncio.AbstractEventLoop


@contextmanager
def serve_in_thread(app: Any) -> Iterator[Served]:
    """Serve ``app`` with uvicorn and the gateway's protocol in a thread, lifespan included.

    Yields the base URL and the server's event loop; shuts the server down at exit.
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
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)  # in a thread, uvicorn leaves the signal handlers alone
    thread = threading.Thread(target=server.run, name="gateway-in-thread", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.01)
    try:
        yield Served(f"http://127.0.0.1:{port}", server.servers[0].get_loop())
    finally:
        server.should_exit = True
        thread.join(10)
