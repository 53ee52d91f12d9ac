"""An upstream stream that never completes a line: linear decoding, one bounded event.

A gateway whose provider has ``timeout_s`` 10 (so the drip cut does not end
the flood first). Three streams (OpenAI and Anthropic routes) whose upstream
sends two pieces, then 64 MiB without a newline as fast as the gateway reads,
while another client sends ordinary requests. Each stream ends with the two pieces and
exactly one error event once its unfinished event passes ``max_event_bytes``
(1 MiB, the default); the gateway spends little CPU on it; the other client
is answered as usual. The decoder alone is linear in what it is fed.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from src.providers.sse import EventTooLarge, SSEDecoder
from tests.hostile.harness import Exposure, gateway_config, hostile_gateway, scaled
from tests.hostile.procstat import MIB, cpu_seconds
from tests.support.gateway import GatewayProcess
from tests.support.sse import StreamSeen, parse
from tests.support.upstream import FakeUpstream, directive

FLOOD_MIB = 64


@pytest.fixture(scope="module")
def patient(
    upstream: FakeUpstream, exposure: Exposure, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    home = tmp_path_factory.mktemp("sse-flood")
    config = gateway_config(upstream.base_url, home / "gateway.log", deadline_s=20)
    config["providers"]["up"]["timeout_s"] = 10
    gateway = hostile_gateway(home, config).start()
    exposure.files += [gateway.log_file, gateway.stdout_file, gateway.stderr_file]
    yield gateway
    gateway.stop()


async def _flood(client: httpx.AsyncClient, index: int) -> tuple[str, int, StreamSeen, bytes]:
    route = "/v1/messages" if index % 3 == 2 else "/v1/chat/completions"
    body: dict[str, Any] = {
        "model": "chat",
        "stream": True,
        "max_tokens": 50,
        "messages": [
            {"role": "user", "content": directive(f"flood-{index}", f"nolines:{FLOOD_MIB}")}
        ],
    }
    async with client.stream("POST", route, json=body) as response:
        raw = await response.aread()
    return route, response.status_code, parse(raw, anthropic=route == "/v1/messages"), raw


async def _beside(client: httpx.AsyncClient, count: int) -> list[float]:
    latencies = []
    for index in range(count):
        body = {
            "model": "chat",
            "messages": [{"role": "user", "content": directive(f"beside-flood-{index}", "ok")}],
        }
        started = time.monotonic()
        response = await client.post("/v1/chat/completions", json=body)
        latencies.append(time.monotonic() - started)
        assert response.status_code == 200
    return latencies


async def _scenario(
    gateway: GatewayProcess, floods: int
) -> tuple[list[tuple[str, int, StreamSeen, bytes]], list[float]]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
        streams = asyncio.gather(*(_flood(client, i) for i in range(floods)))
        latencies = await _beside(client, 50)
        return await streams, latencies


def test_a_stream_without_newlines_fails_with_one_error_event_and_little_cpu(
    patient: GatewayProcess, exposure: Exposure, figures: Any
) -> None:
    gateway = patient
    assert gateway.process is not None
    floods = scaled(3)
    cpu = cpu_seconds(gateway.process.pid)
    results, latencies = asyncio.run(_scenario(gateway, floods))
    cpu = cpu_seconds(gateway.process.pid) - cpu
    for *_, raw in results:
        exposure.text(raw.decode("utf-8", "replace"))
    statuses = [status for _, status, _, _ in results]
    figures.record(
        "sse_flood",
        streams=floods,
        bytes_without_newline_per_stream_mib=FLOOD_MIB,
        gateway_500s=statuses.count(500),
        ended_with_one_error_event=sum(seen.failed_once for _, _, seen, _ in results),
        gateway_cpu_s=round(cpu, 2),
        requests_beside=len(latencies),
        beside_p50_ms=round(statistics.median(latencies) * 1000, 1),
        beside_max_ms=round(max(latencies) * 1000, 1),
    )
    assert statuses == [200] * floods
    for route, _, seen, _ in results:
        assert [p.strip() for p in seen.pieces] == ["p0", "p1"], seen
        assert seen.failed_once, seen
        kind = "api_error" if route == "/v1/messages" else "upstream_error"
        assert seen.errors[0]["type"] == kind
        assert "max_event_bytes" in seen.errors[0]["message"]
    assert cpu < 1.5, cpu
    assert max(latencies) < 1.0, latencies


def test_the_decoder_is_linear_in_what_it_is_fed() -> None:
    """32 MiB without a newline in 64 KiB pieces: each byte is copied a few times, not 500."""
    piece = b"x" * 65536
    decoder = SSEDecoder(max_event_bytes=64 * MIB)
    started = time.process_time()
    assert decoder.feed(b"data: ") == []
    for _ in range(32 * 16):
        assert decoder.feed(piece) == []
    assert decoder.feed(b"\n\n") == [b"x" * (32 * MIB)]
    assert time.process_time() - started < 1.0
    small = SSEDecoder(max_event_bytes=MIB)
    small.feed(b"data: ")
    try:
        for _ in range(17):
            small.feed(piece)
    except EventTooLarge:
        return
    raise AssertionError("an event over max_event_bytes was not refused")
