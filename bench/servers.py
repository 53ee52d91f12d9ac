"""Start, watch and always stop the servers a benchmark run needs."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 60.0


def progress(message: str) -> None:
    # Progress goes to stderr so that stdout is only the markdown report.
    print(message, file=sys.stderr, flush=True)


def fail(message: str) -> NoReturn:
    raise SystemExit(f"bench: {message}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def managed(
    cmd: list[str], log: Path, cwd: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` for the duration of the block and always stop it after."""
    with log.open("wb") as out:
        # Own session: Ctrl-C reaches only this script, which then stops the
        # servers in order; killpg also reaches anything they forked.
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def ensure_running(proc: subprocess.Popen[bytes], name: str, log: Path) -> None:
    if proc.poll() is not None:
        fail(f"{name} exited with code {proc.returncode}; last lines of {log}:\n{log_tail(log)}")


def wait_for_port(proc: subprocess.Popen[bytes], port: int, name: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        ensure_running(proc, name, log)
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.01)
    fail(f"{name} did not listen on port {port} within {STARTUP_TIMEOUT_S:.0f} s")


def wait_healthy(proc: subprocess.Popen[bytes], port: int, started_at: float, log: Path) -> float:
    """Seconds from process start to the first 200 on GET /healthz."""
    while time.perf_counter() - started_at < STARTUP_TIMEOUT_S:
        ensure_running(proc, "gateway", log)
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection(HOST, port, timeout=1)
            try:
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return time.perf_counter() - started_at
            finally:
                conn.close()
        time.sleep(0.005)
    fail(
        f"gateway did not answer GET /healthz with 200 within {STARTUP_TIMEOUT_S:.0f} s; "
        f"log:\n{log_tail(log)}"
    )
