"""Shutdown: SIGTERM to a real gateway process with requests and streams in flight.

New work is refused, short requests finish, long streams end with one error
event at the drain deadline (``shutdown_drain_s``), every telemetry line is
written, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hostile.harness import Exposure, gateway_config, hostile_gateway
from tests.support.gateway import GatewayProcess
from tests.support.sse import parse
from tests.support.upstream import FakeUpstream, directive

pytestmark = pytest.mark.slow

DRAIN_S = 1.5
LONG = 4
SHORT = 6


def _body(rid: str, plan: str, stream: bool) -> dict[str, Any]:
    return {
        "model": "chat",
        "stream": stream,
        "messages": [{"role": "user", "content": directive(rid, plan)}],
    }


async def _long_stream(client: httpx.AsyncClient, index: int, started: asyncio.Event) -> bytes:
    body = _body(f"long-{index}", "ok:400:0.05", True)  # 20 s of chunks
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        raw = b""
        async for chunk in response.aiter_bytes():
            raw += chunk
            if b'"content":"p1' in raw:
                started.set()
        return raw


async def _short(client: httpx.AsyncClient, index: int) -> httpx.Response:
    stream = index % 2 == 0
    body = _body(f"short-{index}", "delay:0.6,ok" if not stream else "ok:10:0.08", stream)
    return await client.post("/v1/chat/completions", json=body)


async def _scenario(gateway: GatewayProcess) -> dict[str, Any]:
    assert gateway.process is not None
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=20) as client:
        flags = [asyncio.Event() for _ in range(LONG)]
        longs = [asyncio.ensure_future(_long_stream(client, i, flags[i])) for i in range(LONG)]
        await asyncio.wait_for(asyncio.gather(*(flag.wait() for flag in flags)), 10)
        shorts = [asyncio.ensure_future(_short(client, i)) for i in range(SHORT)]
        await asyncio.sleep(0.2)  # the short ones are at the upstream now
        gateway.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        await asyncio.sleep(0.3)
        refused_new = 0
        for _ in range(3):
            try:
                async with httpx.AsyncClient(base_url=gateway.base_url, timeout=2) as fresh:
                    response = await fresh.post(
                        "/v1/chat/completions", json=_body("late", "ok", False)
                    )
                refused_new += int(response.status_code == 503)
            except httpx.TransportError:
                refused_new += 1  # the listening socket is closed: refused
        short_answers = await asyncio.gather(*shorts)
        long_bodies = await asyncio.gather(*longs)
        long_ended = time.monotonic() - signalled
    exit_code = await asyncio.to_thread(gateway.process.wait, 15)
    return {
        "refused_new": refused_new,
        "short": short_answers,
        "long": long_bodies,
        "long_ended_s": long_ended,
        "exit": exit_code,
        "exit_s": time.monotonic() - signalled,
    }


def test_sigterm_drains_finishes_short_work_interrupts_long_streams_and_exits_0(
    upstream: FakeUpstream,
    exposure: Exposure,
    figures: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    home: Path = tmp_path_factory.mktemp("shutdown")
    config = gateway_config(upstream.base_url, home / "gateway.log", shutdown_drain_s=DRAIN_S)
    gateway = hostile_gateway(home, config).start()
    exposure.files += [gateway.log_file, gateway.stdout_file, gateway.stderr_file]
    try:
        seen = asyncio.run(_scenario(gateway))
    finally:
        gateway.stop()
    shorts_ok = [
        r
        for r in seen["short"]
        if r.status_code == 200 and (b"[DONE]" in r.content or b"p4" in r.content)
    ]
    longs = [parse(raw, anthropic=False) for raw in seen["long"]]
    interrupted = [
        s
        for s in longs
        if s.failed_once and s.in_order and s.errors[0]["type"] == "service_unavailable"
    ]
    lines = gateway.log_lines()
    outcomes = [line["outcome"] for line in lines]
    figures.record(
        "shutdown",
        new_requests_refused=f"{seen['refused_new']}/3",
        short_requests_finished=f"{len(shorts_ok)}/{SHORT}",
        long_streams_ended_with_one_error_event=f"{len(interrupted)}/{LONG}",
        drain_deadline_s=DRAIN_S,
        long_streams_ended_after_s=round(seen["long_ended_s"], 2),
        telemetry_lines=f"{len(lines)}/{LONG + SHORT}",
        exit_code=seen["exit"],
    )
    assert seen["refused_new"] == 3
    assert len(shorts_ok) == SHORT, [r.text[:200] for r in seen["short"]]
    assert len(interrupted) == LONG, longs
    assert DRAIN_S - 0.2 < seen["long_ended_s"] < DRAIN_S + 1.5
    assert seen["exit"] == 0
    assert len(lines) == LONG + SHORT
    assert outcomes.count("interrupted") == LONG
    assert outcomes.count("completed") == SHORT
