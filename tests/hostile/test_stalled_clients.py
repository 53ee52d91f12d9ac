"""Clients that stop reading a long stream: the upstream is not blamed, the client is cut.

A gateway process whose provider has ``timeout_s`` 1 and whose
``response_write_timeout_s`` is 4. The upstream streams about 10 MB (pieces
of 2,000 characters), more than every buffer between it and the client holds,
so a client that stops reading pauses the upstream (back pressure). Clients
are raw sockets with a small receive buffer, so the kernel holds little on
their behalf.

- A client that pauses longer than the upstream timeout, then reads on, gets
  the whole stream: the pause is the gateway's own back pressure, not
  upstream silence.
- A client that reads nothing is cut at the write timeout and logged as its
  own fault (499 ``client_too_slow``); the upstream connection is closed.
- SIGTERM with such a client connected: the process exits at the drain
  deadline plus a moment.
- Twenty streams held open after relaying 3 MB of text each cost the gateway
  little memory: a stream keeps counts, not the text it relayed.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hostile.harness import Exposure, gateway_config, hostile_gateway
from tests.hostile.procstat import MIB, rss_bytes
from tests.support.gateway import GatewayProcess
from tests.support.upstream import FakeUpstream, directive

UPSTREAM_TIMEOUT_S = 1.0
WRITE_TIMEOUT_S = 4.0
DRAIN_S = 1.0
LONG = "long:5000:2000"  # about 10.5 MB of events


def _config(upstream: FakeUpstream, home: Path, **overrides: Any) -> dict[str, Any]:
    config = gateway_config(
        upstream.base_url,
        home / "gateway.log",
        response_write_timeout_s=WRITE_TIMEOUT_S,
        shutdown_drain_s=DRAIN_S,
        deadline_s=None,
        **overrides,
    )
    config["providers"]["up"]["timeout_s"] = UPSTREAM_TIMEOUT_S
    return config


@pytest.fixture(scope="module")
def stalling(
    upstream: FakeUpstream, exposure: Exposure, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    home = tmp_path_factory.mktemp("stalled-clients")
    gateway = hostile_gateway(home, _config(upstream, home)).start()
    exposure.files += [gateway.log_file, gateway.stdout_file, gateway.stderr_file]
    yield gateway
    gateway.stop()


def _stream_request(rid: str, plan: str) -> bytes:
    body = json.dumps(
        {
            "model": "chat",
            "stream": True,
            "messages": [{"role": "user", "content": directive(rid, plan)}],
        }
    ).encode()
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    )
    return head + body


def _small_window_client(port: int) -> socket.socket:
    """A connected socket whose kernel receive buffer is small (set before connecting)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


def _read_until_closed(sock: socket.socket, deadline_s: float) -> tuple[bytes, bool]:
    """Everything until the gateway closes the connection; (bytes, whether it was a reset)."""
    sock.settimeout(deadline_s)
    data = bytearray()
    try:
        while chunk := sock.recv(1 << 20):
            data += chunk
    except ConnectionResetError:
        return bytes(data), True
    return bytes(data), False


def _ids(gateway: GatewayProcess) -> set[str]:
    return {line["request_id"] for line in gateway.log_lines()}


def _new_line(gateway: GatewayProcess, known: set[str], timeout_s: float) -> dict[str, Any] | None:
    """The first telemetry line of a request not in ``known``, once it is written."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in gateway.log_lines():
            if line["request_id"] not in known:
                return line
        time.sleep(0.05)
    return None


def test_a_reader_pausing_longer_than_the_upstream_timeout_gets_its_whole_stream(
    stalling: GatewayProcess, upstream: FakeUpstream, figures: Any
) -> None:
    known = _ids(stalling)
    sock = _small_window_client(stalling.port)
    try:
        sock.sendall(_stream_request("paused-reader", LONG))
        first = bytearray()
        while len(first) < 100_000:
            first += sock.recv(65536)
        time.sleep(UPSTREAM_TIMEOUT_S * 2.5)  # the upstream is paused by back pressure meanwhile
        rest, reset = _read_until_closed(sock, 20)
    finally:
        sock.close()
    raw = bytes(first) + rest
    line = _new_line(stalling, known, 5)
    figures.add("stalled_clients", cases=1)
    assert not reset
    assert b"data: [DONE]" in raw, raw[-300:]
    assert b'"error"' not in raw
    assert line is not None and line["outcome"] == "completed" and line["status"] == 200, line


def test_a_client_that_reads_nothing_is_cut_at_the_write_timeout_as_its_own_fault(
    stalling: GatewayProcess, upstream: FakeUpstream, figures: Any
) -> None:
    known = _ids(stalling)
    sock = _small_window_client(stalling.port)
    try:
        sock.sendall(_stream_request("deaf-reader", LONG + ":60"))
        started = time.monotonic()
        line = _new_line(stalling, known, WRITE_TIMEOUT_S * 3)
        logged_after = time.monotonic() - started
        _, reset = _read_until_closed(sock, 5)
    finally:
        sock.close()
    attempts = upstream.of("deaf-reader")
    figures.add("stalled_clients", cases=1)
    figures.record(
        "stalled_clients",
        write_timeout_s=WRITE_TIMEOUT_S,
        silent_reader_cut_after_s=round(logged_after, 2),
    )
    assert line is not None, "the stream was never cut"
    assert (line["status"], line["error_type"], line["outcome"]) == (
        499,
        "client_too_slow",
        "client_disconnected",
    ), line
    assert WRITE_TIMEOUT_S <= logged_after < WRITE_TIMEOUT_S * 2, logged_after
    assert reset, "the connection was closed, not aborted"
    assert len(attempts) == 1
    attempts[0].done.wait(5)
    assert attempts[0].closed_by_peer_at is not None  # the upstream was let go
    assert "upstream" not in (line["error_type"] or "")


async def _held_stream(
    client: httpx.AsyncClient, index: int, pieces: int, seen: asyncio.Event
) -> int:
    body = {
        "model": "chat",
        "stream": True,
        "messages": [
            {"role": "user", "content": directive(f"held-{index}", f"long:{pieces}:2000:6")}
        ],
    }
    last = f"p{pieces - 1} ".encode()
    size = 0
    tail = b""
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if not seen.is_set() and last in tail + chunk:
                seen.set()
            tail = chunk[-64:]
    return size


async def _held(gateway: GatewayProcess, streams: int, pieces: int) -> tuple[int, int, list[int]]:
    assert gateway.process is not None
    limits = httpx.Limits(max_connections=streams + 4)
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=60, limits=limits) as client:
        warm = asyncio.Event()
        await _held_stream(client, -1, 50, warm)  # what any stream allocates once
        before = rss_bytes(gateway.process.pid)
        flags = [asyncio.Event() for _ in range(streams)]
        tasks = [
            asyncio.ensure_future(_held_stream(client, i, pieces, flags[i])) for i in range(streams)
        ]
        await asyncio.wait_for(asyncio.gather(*(flag.wait() for flag in flags)), 30)
        await asyncio.sleep(0.3)
        during = rss_bytes(gateway.process.pid)
        sizes = await asyncio.gather(*tasks)
    return before, during, sizes


def test_streams_held_open_keep_little_memory_each(stalling: GatewayProcess, figures: Any) -> None:
    streams, pieces = 20, 1500  # 3 MB of text each
    before, during, sizes = asyncio.run(_held(stalling, streams, pieces))
    relayed = sum(sizes)
    growth = during - before
    figures.add("stalled_clients", cases=streams)
    figures.record(
        "stalled_clients",
        held_streams=streams,
        relayed_mb=round(relayed / 1e6, 1),
        rss_growth_while_held_mb=round(growth / MIB, 1),
    )
    assert relayed > streams * pieces * 2000
    assert growth < 20 * MIB, growth / MIB


def test_sigterm_cuts_a_stream_whose_client_reads_nothing_at_the_drain_deadline(
    upstream: FakeUpstream,
    exposure: Exposure,
    figures: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    home = tmp_path_factory.mktemp("stalled-shutdown")
    config = _config(upstream, home)
    config["response_write_timeout_s"] = 30  # so that only the drain deadline can end it
    gateway = hostile_gateway(home, config).start()
    exposure.files += [gateway.log_file, gateway.stdout_file, gateway.stderr_file]
    assert gateway.process is not None
    sock = _small_window_client(gateway.port)
    try:
        sock.sendall(_stream_request("deaf-at-shutdown", LONG + ":60"))
        _wait_until_stalled(upstream, "deaf-at-shutdown")
        gateway.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        try:
            code = gateway.process.wait(DRAIN_S + 5)
        except Exception:
            code = None
        exit_s = time.monotonic() - signalled
    finally:
        sock.close()
        gateway.stop()
    lines = gateway.log_lines()
    figures.add("stalled_clients", cases=1)
    figures.record(
        "stalled_clients",
        sigterm_with_silent_reader_exit_s=round(exit_s, 2),
        sigterm_drain_s=DRAIN_S,
    )
    assert code == 0, f"the gateway did not exit within {DRAIN_S + 5} s of SIGTERM"
    assert exit_s < DRAIN_S + 3, exit_s
    assert [(line["outcome"], line["status"]) for line in lines] == [("interrupted", 503)]


def _wait_until_stalled(upstream: FakeUpstream, rid: str) -> None:
    """Until the upstream's events stop going out: back pressure has reached it."""
    deadline = time.monotonic() + 10
    sent = -1
    while time.monotonic() < deadline:
        attempts = upstream.of(rid)
        now = attempts[0].events_sent if attempts else -1
        if now == sent and now > 0:
            return
        sent = now
        time.sleep(0.5)
    raise AssertionError(f"the upstream never stalled ({sent} events sent)")
