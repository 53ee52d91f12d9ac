"""Slow clients: slow headers, slow bodies and silent connections are cut by a deadline.

The cut is the HTTP layer's (``src.edge.protocol.GatewayProtocol``, which the gateway
runs under): a request's head and body must arrive within
``request_read_timeout_s`` (2 s here). Normal traffic beside a crowd of slow
clients stays fast.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any

import httpx
import pytest

from tests.hostile.harness import is_envelope, scaled
from tests.support.gateway import GatewayProcess
from tests.support.upstream import directive

pytestmark = pytest.mark.slow

READ_TIMEOUT_S = 2.0


async def _slow_client(port: int, kind: str) -> tuple[float, bytes]:
    """Dribble a request; (seconds until the gateway cut it, what it answered)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    body = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "x"}]}).encode()
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    data = {"slow_headers": head, "slow_body": head + body, "silent": b""}[kind]
    if kind == "slow_body":
        writer.write(head)
        data = body
    answer = b""

    async def dribble() -> None:
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.3)

    sender = asyncio.ensure_future(dribble())
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), READ_TIMEOUT_S + 5):
            answer += chunk
    except (ConnectionError, TimeoutError):
        pass
    cut = time.monotonic() - started
    sender.cancel()
    writer.transport.abort()
    return cut, answer


async def _normal(base_url: str, count: int) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        for index in range(count):
            body = {
                "model": "chat",
                "messages": [{"role": "user", "content": directive(f"beside-{index}", "ok")}],
            }
            started = time.monotonic()
            response = await client.post("/v1/chat/completions", json=body)
            latencies.append(time.monotonic() - started)
            assert response.status_code == 200
    return latencies


async def _scenario(
    gateway: GatewayProcess, slow: int
) -> tuple[list[tuple[float, bytes]], list[float]]:
    kinds = ["slow_headers", "slow_body", "silent"]
    crowd = [asyncio.ensure_future(_slow_client(gateway.port, kinds[i % 3])) for i in range(slow)]
    await asyncio.sleep(0.3)
    latencies = await _normal(gateway.base_url, 100)
    return list(await asyncio.gather(*crowd)), latencies


def test_slow_clients_are_cut_at_the_read_deadline_and_others_stay_fast(
    gateway: GatewayProcess, figures: Any
) -> None:
    slow = scaled(60)
    cuts, latencies = asyncio.run(_scenario(gateway, slow))
    durations = [cut for cut, _ in cuts]
    answers = [answer for _, answer in cuts]
    p99 = statistics.quantiles(latencies, n=100)[98]
    figures.record(
        "slow_clients",
        slow_clients=slow,
        cut=sum(1 for d in durations if d < READ_TIMEOUT_S + 1.5),
        read_deadline_s=READ_TIMEOUT_S,
        slowest_cut_s=round(max(durations), 2),
        normal_requests_beside=len(latencies),
        normal_p50_ms=round(statistics.median(latencies) * 1000, 1),
        normal_p99_ms=round(p99 * 1000, 1),
    )
    assert all(READ_TIMEOUT_S - 0.2 < d < READ_TIMEOUT_S + 1.5 for d in durations), durations
    for answer in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answer[:200]
        assert is_envelope(408, body, "/v1/chat/completions")
    assert p99 < 0.5, latencies
