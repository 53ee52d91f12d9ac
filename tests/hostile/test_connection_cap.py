"""The upstream connection cap: a bounded, visible wait that ends in a clear error.

A gateway process with three providers on the same upstream: ``small``
(``max_connections`` 2, ``pool_timeout_s`` 0.5), ``queued`` (1 connection,
``pool_timeout_s`` 4) and ``roomy`` (the defaults). Requests held at the
upstream (``delay``) take the connections.

- The request after the cap waits the pool timeout, then gets 503
  ``upstream_pool_exhausted`` without reaching the upstream.
- An alias whose first target is saturated is served by its fallback.
- While a request waits, the metrics show the connections in use and the
  request waiting; one that gets a connection within the pool timeout is served.
- With the defaults (the shared gateway), 300 concurrent streams, more than
  the old default pool of 256, all get their first event at once.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from src.config import ProviderConfig
from tests.hostile.harness import ADMIN_KEY, Exposure, gateway_config, hostile_gateway, is_envelope
from tests.support.gateway import GatewayProcess
from tests.support.upstream import FakeUpstream, directive

POOL_TIMEOUT_S = 0.5
HOLD_S = 3.0


@pytest.fixture(scope="module")
def capped(
    upstream: FakeUpstream, exposure: Exposure, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    home = tmp_path_factory.mktemp("connection-cap")
    config = gateway_config(upstream.base_url, home / "gateway.log", deadline_s=10)
    base = {**config["providers"]["up"], "timeout_s": 8}
    config["providers"] = {
        "small": {**base, "max_connections": 2, "pool_timeout_s": POOL_TIMEOUT_S},
        "queued": {**base, "max_connections": 1, "pool_timeout_s": 4},
        "roomy": base,
    }
    config["aliases"] = {
        "small": {"provider": "small", "model": "m1"},
        "queued": {"provider": "queued", "model": "m1"},
        "spill": {
            "provider": "small",
            "model": "m1",
            "fallbacks": [{"provider": "roomy", "model": "m1"}],
        },
    }
    gateway = hostile_gateway(home, config).start()
    exposure.files += [gateway.log_file, gateway.stdout_file, gateway.stderr_file]
    yield gateway
    gateway.stop()


def _body(alias: str, rid: str, plan: str) -> dict[str, Any]:
    return {"model": alias, "messages": [{"role": "user", "content": directive(rid, plan)}]}


async def _post(
    client: httpx.AsyncClient, alias: str, rid: str, plan: str
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.post("/v1/chat/completions", json=_body(alias, rid, plan))
    return response, time.monotonic() - started


def _gauge(text: str, name: str, provider: str) -> float:
    found = re.search(rf'^{name}{{provider="{provider}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def _saturate(gateway: GatewayProcess) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=20) as client:
        holders = [
            asyncio.ensure_future(_post(client, "small", f"hold-{i}", f"delay:{HOLD_S}"))
            for i in range(2)
        ]
        await asyncio.sleep(0.5)
        over, over_s = await _post(client, "small", "over-cap", "ok")
        spilled, _ = await _post(client, "spill", "spilled", "ok")
        held = await asyncio.gather(*holders)
    return {"over": over, "over_s": over_s, "spilled": spilled, "held": held}


def test_past_the_cap_a_request_waits_the_pool_timeout_then_gets_503_or_the_fallback(
    capped: GatewayProcess, upstream: FakeUpstream, exposure: Exposure, figures: Any
) -> None:
    seen = asyncio.run(_saturate(capped))
    over, spilled = seen["over"], seen["spilled"]
    exposure.answer(over)
    statuses = [over.status_code, spilled.status_code, *(r.status_code for r, _ in seen["held"])]
    figures.add("connection_cap", cases=len(statuses), gateway_500s=statuses.count(500))
    figures.record(
        "connection_cap",
        pool_timeout_s=POOL_TIMEOUT_S,
        request_past_the_cap_answered_after_s=round(seen["over_s"], 2),
    )
    assert over.status_code == 503, over.text
    assert is_envelope(503, over.content, "/v1/chat/completions")
    assert over.json()["error"]["type"] == "upstream_pool_exhausted"
    assert over.headers.get("retry-after") == "1"
    assert POOL_TIMEOUT_S - 0.1 < seen["over_s"] < POOL_TIMEOUT_S + 1.0
    assert upstream.of("over-cap") == []  # it never reached the upstream
    assert spilled.status_code == 200, spilled.text
    assert [a.path for a in upstream.of("spilled")] == ["/v1/chat/completions"]
    assert [r.status_code for r, _ in seen["held"]] == [200, 200]
    lines = {line["status"]: line for line in capped.log_lines()}
    assert lines[503]["error_type"] == "upstream_pool_exhausted"
    assert lines[503]["breaker"] == "closed"
    spill_line = [line for line in capped.log_lines() if line["alias"] == "spill"][-1]
    assert spill_line["provider"] == "roomy"


async def _watch_a_wait(gateway: GatewayProcess) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=20) as client:
        holder = asyncio.ensure_future(_post(client, "queued", "q-hold", "delay:2"))
        await asyncio.sleep(0.4)
        waiter = asyncio.ensure_future(_post(client, "queued", "q-wait", "ok"))
        await asyncio.sleep(0.4)
        during = (await client.get("/metrics", headers=headers)).text
        served, waited_s = await waiter
        await holder
        after = (await client.get("/metrics", headers=headers)).text
    return {"during": during, "after": after, "served": served, "waited_s": waited_s}


def test_the_metrics_show_connections_in_use_and_requests_waiting(
    capped: GatewayProcess, figures: Any
) -> None:
    seen = asyncio.run(_watch_a_wait(capped))
    during, after = seen["during"], seen["after"]
    figures.add("connection_cap", cases=2)
    assert _gauge(during, "gateway_upstream_connections_in_use", "queued") == 1
    assert _gauge(during, "gateway_upstream_pool_waiting", "queued") == 1
    assert seen["served"].status_code == 200  # within its pool timeout: served, not refused
    assert 1.0 < seen["waited_s"] < 4
    assert _gauge(after, "gateway_upstream_connections_in_use", "queued") == 0
    assert _gauge(after, "gateway_upstream_pool_waiting", "queued") == 0
    assert re.search(
        r'^gateway_upstream_pool_wait_seconds_count\{provider="queued"\} 1\.0$', after, re.M
    )


async def _many_streams(gateway: GatewayProcess, count: int) -> list[float]:
    limits = httpx.Limits(max_connections=count + 10)
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30, limits=limits) as client:

        async def one(index: int) -> float:
            body = {
                "model": "chat",
                "stream": True,
                "messages": [{"role": "user", "content": directive(f"many-{index}", "ok:4:1")}],
            }
            started = time.monotonic()
            first = None
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                async for chunk in response.aiter_bytes():  # to the end: the stream is held
                    if first is None and b'"role":"assistant"' in chunk:
                        first = time.monotonic() - started
            assert first is not None, "no first event"
            return first

        return await asyncio.gather(*(one(i) for i in range(count)))


def test_the_default_pool_holds_hundreds_of_concurrent_streams_without_waiting(
    gateway: GatewayProcess, figures: Any
) -> None:
    """Each stream lasts 4 s: one waiting for a connection would get its first event 4 s late."""
    assert ProviderConfig(base_url="http://up.example/v1").max_connections >= 1024
    count = 300
    firsts = asyncio.run(_many_streams(gateway, count))
    figures.record(
        "connection_cap",
        concurrent_streams_default_pool=count,
        slowest_first_event_s=round(max(firsts), 2),
    )
    assert max(firsts) < 2.5, sorted(firsts)[-10:]
