"""Hostile upstream bodies: endless, huge, compressed without being asked.

A gateway process whose providers ``up`` (the gateway's HTTP/1.1 client) and
``aio`` (aiohttp) have ``max_response_bytes`` 4 MiB and ``timeout_s`` 2. For
each transport: a non-streamed answer whose chunked body never ends, one of
100 MiB announced by its ``Content-Length``, and a gzip bomb (1 GiB of zeros
in about 1 MiB) sent with a ``Content-Encoding`` the gateway did not ask for.
Each is a 502 ``upstream_error`` that names the bound, well before the
timeout; the gateway's memory and CPU stay small while it happens; the
upstream connection is closed rather than read to the end.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from src.config import ProviderConfig
from tests.hostile.harness import Exposure, gateway_config, hostile_gateway, is_envelope, scaled
from tests.hostile.procstat import MIB, PeakRss, cpu_seconds
from tests.support.gateway import GatewayProcess
from tests.support.upstream import FakeUpstream, directive

BOUND = 4 * MIB
TIMEOUT_S = 2.0
ALIASES = {"http1": "chat", "aiohttp": "aio"}


@pytest.fixture(scope="module")
def bounded(
    upstream: FakeUpstream, exposure: Exposure, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    home = tmp_path_factory.mktemp("bounded-bodies")
    config = gateway_config(upstream.base_url, home / "gateway.log")
    config["providers"]["up"]["max_response_bytes"] = BOUND
    config["providers"]["aio"] = {**config["providers"]["up"], "transport": "aiohttp"}
    config["aliases"]["aio"] = {"provider": "aio", "model": "m1"}
    gateway = hostile_gateway(home, config).start()
    exposure.files += [gateway.log_file, gateway.stdout_file, gateway.stderr_file]
    yield gateway
    gateway.stop()


def _body(alias: str, rid: str, plan: str, stream: bool = False) -> dict[str, Any]:
    return {
        "model": alias,
        "stream": stream,
        "messages": [{"role": "user", "content": directive(rid, plan)}],
    }


async def _calls(
    gateway: GatewayProcess, alias: str, plan: str, count: int, stream: bool = False
) -> list[tuple[httpx.Response, float]]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:

        async def one(index: int) -> tuple[httpx.Response, float]:
            started = time.monotonic()
            body = _body(alias, f"{alias}-{plan}-{stream}-{index}-{time.time_ns()}", plan, stream)
            response = await client.post("/v1/chat/completions", json=body)
            return response, time.monotonic() - started

        return await asyncio.gather(*(one(i) for i in range(count)))


def _closed_by_gateway(upstream: FakeUpstream, response: httpx.Response) -> bool:
    rid = response.request.content.decode().split("rid=")[1].split()[0]
    attempts = upstream.of(rid)
    for attempt in attempts:
        attempt.done.wait(5)
    return bool(attempts) and all(a.closed_by_peer_at is not None for a in attempts)


@pytest.mark.parametrize("transport", ["http1", "aiohttp"])
def test_an_endless_body_is_cut_at_the_bound_with_memory_bounded(
    bounded: GatewayProcess,
    upstream: FakeUpstream,
    exposure: Exposure,
    figures: Any,
    transport: str,
) -> None:
    assert bounded.process is not None
    count = scaled(4)
    with PeakRss(bounded.process.pid) as memory:
        answers = asyncio.run(_calls(bounded, ALIASES[transport], "endless", count))
    for response, _ in answers:
        exposure.answer(response)
    statuses = [response.status_code for response, _ in answers]
    figures.add("upstream_bodies", cases=count, gateway_500s=statuses.count(500))
    figures.record(
        "upstream_bodies",
        **{f"endless_body_{transport}_peak_rss_growth_mb": round(memory.growth / MIB, 1)},
    )
    assert statuses == [502] * count, [r.text[:300] for r, _ in answers]
    for response, elapsed in answers:
        assert response.json()["error"]["type"] == "upstream_error"
        assert "max_response_bytes" in response.json()["error"]["message"]
        assert elapsed < TIMEOUT_S, elapsed  # cut at the bound, not read to the timeout
        assert _closed_by_gateway(upstream, response)
    # What an answer may hold, for each one at once (a copy while joining), and some slack.
    assert memory.growth < count * 2 * BOUND + 32 * MIB, memory.growth / MIB


@pytest.mark.parametrize("transport", ["http1", "aiohttp"])
def test_a_body_over_the_bound_is_refused_and_one_under_it_is_served(
    bounded: GatewayProcess, upstream: FakeUpstream, figures: Any, transport: str
) -> None:
    assert bounded.process is not None
    alias = ALIASES[transport]
    with PeakRss(bounded.process.pid) as memory:
        (over, elapsed), *_ = asyncio.run(_calls(bounded, alias, "huge:100", 1))
    (under, _), *_ = asyncio.run(_calls(bounded, alias, "huge:3", 1))
    figures.add(
        "upstream_bodies", cases=2, gateway_500s=[over.status_code, under.status_code].count(500)
    )
    assert over.status_code == 502, over.text[:300]
    assert is_envelope(502, over.content, "/v1/chat/completions")
    assert "max_response_bytes" in over.json()["error"]["message"]
    assert elapsed < TIMEOUT_S
    assert memory.growth < 64 * MIB, memory.growth / MIB
    assert _closed_by_gateway(upstream, over)
    assert under.status_code == 200, under.text[:300]
    assert len(under.json()["choices"][0]["message"]["content"]) > 3 * MIB - 1000


@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
@pytest.mark.parametrize("transport", ["http1", "aiohttp"])
def test_a_content_encoding_not_asked_for_is_refused_without_inflating_it(
    bounded: GatewayProcess,
    upstream: FakeUpstream,
    figures: Any,
    transport: str,
    stream: bool,
) -> None:
    assert bounded.process is not None
    pid = bounded.process.pid
    cpu = cpu_seconds(pid)
    with PeakRss(pid) as memory:
        (response, _), *_ = asyncio.run(
            _calls(bounded, ALIASES[transport], "gzip:1024", 1, stream=stream)
        )
    cpu = cpu_seconds(pid) - cpu
    figures.add("upstream_bodies", cases=1, gateway_500s=int(response.status_code == 500))
    if not stream:
        figures.record(
            "upstream_bodies",
            **{
                f"gzip_bomb_{transport}_peak_rss_growth_mb": round(memory.growth / MIB, 1),
                f"gzip_bomb_{transport}_cpu_s": round(cpu, 2),
                "gzip_bomb_inflates_to_mib": 1024,
            },
        )
    assert response.status_code == 502, response.text[:300]
    message = response.json()["error"]["message"]
    assert "Content-Encoding 'gzip'" in message, message
    assert memory.growth < 64 * MIB, memory.growth / MIB
    assert cpu < 1.0, cpu


@pytest.mark.parametrize("transport", ["http1", "aiohttp"])
def test_the_gateway_asks_upstreams_for_no_compression(
    bounded: GatewayProcess, upstream: FakeUpstream, transport: str
) -> None:
    for stream in (False, True):
        (response, _), *_ = asyncio.run(_calls(bounded, ALIASES[transport], "ok", 1, stream))
        assert response.status_code == 200
        rid = response.request.content.decode().split("rid=")[1].split()[0]
        assert [a.headers.get("accept-encoding") for a in upstream.of(rid)] == ["identity"]


def test_the_default_bound_holds_a_full_embeddings_batch() -> None:
    """2,048 inputs (OpenAI's most): 3,072 dimensions in base64, 1,536 as JSON floats."""
    default = ProviderConfig(base_url="http://up.example/v1").max_response_bytes
    assert default == 64 * MIB

    def answer(dimensions: int, as_base64: bool) -> int:
        vector: Any = [-0.0123456789] * dimensions
        if as_base64:
            vector = base64.b64encode(b"\0" * 4 * dimensions).decode()
        one = orjson.dumps({"object": "embedding", "index": 2047, "embedding": vector})
        return 2048 * (len(one) + 1) + 200

    assert answer(3072, as_base64=True) < default
    assert answer(1536, as_base64=False) < default
