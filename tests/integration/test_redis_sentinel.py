"""The Redis backend behind a real Sentinel: a primary, its replica, one Sentinel.

The gateway asks the Sentinel for the primary of ``state.sentinel_service``; when the
primary stops, requests follow ``on_error`` until the Sentinel has promoted the replica,
then they are counted on the new primary.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.support.configs import UPSTREAM, make_config
from tests.support.loopback import free_port
from tests.support.payloads import chat_body, completion
from tests.support.redis_servers import new_prefix
from tests.support.redis_topologies import LocalSentinel


@pytest.fixture
def sentinel(tmp_path) -> Iterator[LocalSentinel]:
    directory = tmp_path / "sentinel"
    directory.mkdir()
    topology = LocalSentinel(directory)
    topology.start()
    yield topology
    topology.stop()


def sentinel_state(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "backend": "redis", "redis_mode": "sentinel", "redis_url": url,
        "sentinel_service": LocalSentinel.SERVICE, "key_prefix": new_prefix(), "timeout_s": 5,
        **extra,
    }  # fmt: skip


@pytest.mark.parametrize("algorithm", ["sliding_log", "gcra"])
async def test_a_burst_through_a_sentinel_admits_exactly_the_limit(
    gateway_client, upstream, tmp_path, provider_key, sentinel, algorithm
):
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)
        return httpx.Response(200, json=completion())

    upstream.post(f"{UPSTREAM}/chat/completions").mock(side_effect=slow)
    config = make_config(
        tmp_path,
        rate_limit={"requests_per_minute": 25, "algorithm": algorithm},
        state=sentinel_state(sentinel.url),
    )
    client = await gateway_client(config)
    responses = await asyncio.gather(
        *(client.post("/v1/chat/completions", json=chat_body()) for _ in range(60))
    )
    assert [r.status_code for r in responses].count(200) == 25
    assert client.app.state.backend.failures == 0


async def test_a_dead_sentinel_listed_first_is_skipped(
    gateway_client, upstream, tmp_path, provider_key, sentinel
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    port = sentinel.url.rsplit(":", 1)[1]
    url = f"redis://127.0.0.1:{free_port()},127.0.0.1:{port}"
    config = make_config(
        tmp_path, rate_limit={"requests_per_minute": 1}, state=sentinel_state(url, timeout_s=1)
    )
    client = await gateway_client(config)
    first = await client.post("/v1/chat/completions", json=chat_body())
    second = await client.post("/v1/chat/completions", json=chat_body())
    assert (first.status_code, second.status_code) == (200, 429)


@pytest.mark.slow
@pytest.mark.parametrize(("on_error", "down_status"), [("fail_open", 200), ("fail_closed", 503)])
async def test_a_failover_follows_on_error_then_counts_on_the_promoted_replica(
    gateway_client, upstream, tmp_path, provider_key, sentinel, on_error, down_status
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    state = sentinel_state(sentinel.url, on_error=on_error, timeout_s=1)
    config = make_config(tmp_path, rate_limit={"requests_per_minute": 3}, state=state)
    client = await gateway_client(config)

    async def status() -> int:
        return (await client.post("/v1/chat/completions", json=chat_body())).status_code

    assert await status() == 200
    sentinel.stop_primary()
    assert [await status() for _ in range(3)] == [down_status] * 3
    sentinel.wait_failover()
    after = [await status() for _ in range(4)]
    # the replica had the first admission (or not, if it was not replicated in time)
    assert after in ([200, 200, 429, 429], [200, 200, 200, 429])


async def test_waiting_settlements_are_flushed_to_the_primary(
    gateway_client, upstream, tmp_path, provider_key, sentinel
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())  # 16 tokens
    state = sentinel_state(sentinel.url)
    config = make_config(
        tmp_path, rate_limit={"requests_per_minute": 10, "tokens_per_minute": 1000}, state=state
    )
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=chat_body(max_tokens=500))
    assert response.status_code == 200
    await client.app.state.backend.flush()
    with redis.Redis(port=sentinel.primary.port) as direct:
        assert int(direct.hget(f"{state['key_prefix']}rl:{{anonymous}}:tok", "total")) == 16
    assert client.app.state.backend.failures == 0
