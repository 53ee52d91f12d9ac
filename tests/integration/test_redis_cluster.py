"""The Redis backend on a real Redis Cluster (three primaries on loopback ports).

Gateway processes share one cluster exactly as they share one Redis: a client's keys sit in
one hash slot, so every script runs on one node. A stopped primary takes only its slots'
clients to ``on_error``, and they are counted again once it is back.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from src.tools.keys import key_sha256, new_key
from tests.support.configs import UPSTREAM, make_config
from tests.support.gateway import GatewayProcess
from tests.support.payloads import chat_body, completion
from tests.support.redis_servers import new_prefix
from tests.support.redis_topologies import LocalCluster

BODY = {"model": "default-chat", "messages": [{"role": "user", "content": "hi"}]}


def cluster_state(url: str, prefix: str, **extra: Any) -> dict[str, Any]:
    return {
        "backend": "redis", "redis_mode": "cluster", "redis_url": url, "key_prefix": prefix,
        "timeout_s": 5, **extra,
    }  # fmt: skip


def stub_config(tmp_path: Path, state: dict[str, Any], rate: dict[str, Any]) -> dict[str, Any]:
    """Stub mode (the key variable is unset), so no upstream is needed."""
    return {
        "providers": {
            "stub": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "GATEWAY_TEST_UNSET_KEY"}
        },
        "aliases": {"default-chat": {"provider": "stub", "model": "m"}},
        "rate_limit": rate,
        "log_file": str(tmp_path / "gateway.log"),
        "state": state,
    }


@pytest.fixture
def gateways() -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for gateway in started:
        gateway.stop()


def start_two(
    gateways: list[GatewayProcess], tmp_path: Path, config: dict[str, Any]
) -> list[GatewayProcess]:
    for index in range(2):
        path = tmp_path / f"config-{index}.json"
        path.write_text(json.dumps(config))
        gateways.append(GatewayProcess(path, tmp_path).start())
    return gateways


async def burst(
    urls: list[str], count: int, headers: dict[str, str], body: dict[str, Any] = BODY
) -> list[httpx.Response]:
    """``count`` concurrent requests spread round-robin over ``urls``."""
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=count)) as client:
        return await asyncio.gather(
            *(
                client.post(
                    f"{urls[i % len(urls)]}/v1/chat/completions", json=body, headers=headers
                )
                for i in range(count)
            )
        )


@pytest.mark.parametrize("algorithm", ["sliding_log", "gcra"])
async def test_two_gateways_on_a_cluster_admit_exactly_the_limit_of_a_burst(
    tmp_path, gateways, redis_cluster, cluster_prefix, algorithm
):
    rate = {"requests_per_minute": 40, "algorithm": algorithm}
    config = stub_config(tmp_path, cluster_state(redis_cluster.url, cluster_prefix), rate)
    first, second = start_two(gateways, tmp_path, config)
    responses = await burst(
        [first.base_url, second.base_url], 120, {"x-client-id": "shared-client"}
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 40
    assert statuses.count(429) == 80


async def test_two_gateways_on_a_cluster_hold_a_budget_exactly_in_a_burst(
    tmp_path, gateways, redis_cluster, cluster_prefix
):
    key = new_key()
    # The stub's answer is 17 words: with max_tokens=17 each request's held estimate equals its
    # real cost, so the spend is the same whenever holds settle, and the budget fits exactly 6.
    body = {**BODY, "max_tokens": 17}
    cost = (2 + 17) / 1_000_000
    state = cluster_state(redis_cluster.url, cluster_prefix)
    config = stub_config(tmp_path, state, {"requests_per_minute": 10**6})
    config["pricing"] = {"stub": {"m": {"input_usd_per_mtok": 1, "output_usd_per_mtok": 1}}}
    config["clients"] = {
        "acme": {"key_sha256": key_sha256(key), "budget": {"usd_per_day": 5.5 * cost}}
    }
    first, second = start_two(gateways, tmp_path, config)
    headers = {"Authorization": f"Bearer {key}"}
    responses = await burst([first.base_url, second.base_url], 120, headers, body)
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 6
    assert {r.json()["error"]["type"] for r in responses if r.status_code == 429} == {
        "budget_exceeded"
    }
    charged = sum(float(r.headers["x-gateway-cost-usd"]) for r in responses if r.status_code == 200)
    assert charged == pytest.approx(6 * cost)


async def test_a_clients_keys_share_one_slot_whatever_its_id(
    gateway_client, upstream, tmp_path, provider_key, redis_cluster, cluster_prefix
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    key = new_key()
    client_id = "team}{a"  # braces would otherwise split its keys over slots
    config = make_config(
        tmp_path,
        rate_limit={"requests_per_minute": 10, "tokens_per_minute": 1000},
        pricing={"primary": {"up-model-a": {"input_usd_per_mtok": 2, "output_usd_per_mtok": 10}}},
        clients={client_id: {"key_sha256": key_sha256(key), "budget": {"usd_per_day": 1}}},
        state=cluster_state(redis_cluster.url, cluster_prefix),
    )
    client = await gateway_client(config)
    headers = {"Authorization": f"Bearer {key}"}
    for _ in range(2):
        response = await client.post("/v1/chat/completions", json=chat_body(), headers=headers)
        assert response.status_code == 200
    assert response.headers["x-ratelimit-remaining-requests"] == "8"
    with redis.RedisCluster.from_url(redis_cluster.url) as direct:
        keys = [k.decode() for k in direct.scan_iter(match=f"{cluster_prefix}*")]
        slots = {direct.keyslot(k) for k in keys}
    assert {k.split(":")[2] for k in keys} == {"rl", "spend"}
    assert all("{team%7D%7Ba}" in k for k in keys)
    assert len(slots) == 1


@pytest.fixture
def own_cluster(tmp_path) -> Iterator[LocalCluster]:
    """A cluster of this test's own, whose nodes it may stop."""
    (tmp_path / "cluster").mkdir()
    cluster = LocalCluster(tmp_path / "cluster")
    cluster.start()
    yield cluster
    cluster.stop()


def ids_on_other_nodes(cluster: LocalCluster, prefix: str) -> tuple[str, str]:
    """Two client ids whose keys live on different primaries."""
    first = "client-0"
    node = cluster.node_of(f"{prefix}rl:{{{first}}}")
    for index in range(1, 100):
        other = f"client-{index}"
        if cluster.node_of(f"{prefix}rl:{{{other}}}") is not node:
            return first, other
    raise AssertionError("every id on one node")


@pytest.mark.slow
@pytest.mark.parametrize(("on_error", "down_status"), [("fail_open", 200), ("fail_closed", 503)])
async def test_a_stopped_primary_sends_its_clients_to_on_error_and_counts_them_once_back(
    gateway_client, upstream, tmp_path, provider_key, own_cluster, on_error, down_status
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    prefix = new_prefix()
    state = cluster_state(own_cluster.url, prefix, on_error=on_error, timeout_s=1)
    config = make_config(tmp_path, rate_limit={"requests_per_minute": 2}, state=state)
    client = await gateway_client(config)
    affected, unaffected = ids_on_other_nodes(own_cluster, prefix)

    async def statuses(client_id: str, count: int) -> list[int]:
        headers = {"x-client-id": client_id}
        return [
            (
                await client.post("/v1/chat/completions", json=chat_body(), headers=headers)
            ).status_code
            for _ in range(count)
        ]

    assert await statuses(affected, 1) == [200]
    node = own_cluster.node_of(f"{prefix}rl:{{{affected}}}")
    node.stop()
    assert await statuses(affected, 3) == [down_status] * 3  # beyond the limit of 2 when open
    assert await statuses(unaffected, 3) == [200, 200, 429]  # its node still counts exactly
    assert client.app.state.backend.failures >= 3

    own_cluster.restart(node)  # empty: nothing persisted
    assert await statuses(affected, 3) == [200, 200, 429]


async def test_waiting_settlements_are_flushed_to_the_cluster_without_failures(
    gateway_client, upstream, tmp_path, provider_key, redis_cluster, cluster_prefix
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())  # 16 tokens
    config = make_config(
        tmp_path,
        rate_limit={"requests_per_minute": 100, "tokens_per_minute": 10_000},
        state=cluster_state(redis_cluster.url, cluster_prefix),
    )
    client = await gateway_client(config)
    ids = [f"client-{index}" for index in range(6)]  # spread over the three primaries
    for client_id in ids:
        response = await client.post(
            "/v1/chat/completions",
            json=chat_body(max_tokens=500),
            headers={"x-client-id": client_id},
        )
        assert response.status_code == 200

    def given_back() -> bool:
        with redis.RedisCluster.from_url(redis_cluster.url) as direct:
            totals = [direct.hget(f"{cluster_prefix}rl:{{{i}}}:tok", "total") for i in ids]
        return all(total is not None and int(total) == 16 for total in totals)

    deadline = asyncio.get_running_loop().time() + 5
    while not given_back():
        assert asyncio.get_running_loop().time() < deadline, "the give-backs never landed"
        await asyncio.sleep(0.05)
    assert client.app.state.backend.failures == 0


async def test_scripts_are_loaded_again_on_each_node_that_forgot_them(
    gateway_client, upstream, tmp_path, provider_key, redis_cluster, cluster_prefix
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    config = make_config(
        tmp_path,
        rate_limit={"requests_per_minute": 1},
        state=cluster_state(redis_cluster.url, cluster_prefix),
    )
    client = await gateway_client(config)
    for node in redis_cluster.nodes:
        with redis.Redis(port=node.port) as direct:
            direct.script_flush()
    ids = [f"client-{index}" for index in range(6)]  # spread over the three primaries
    for client_id in ids:
        headers = {"x-client-id": client_id}
        first = await client.post("/v1/chat/completions", json=chat_body(), headers=headers)
        second = await client.post("/v1/chat/completions", json=chat_body(), headers=headers)
        assert (first.status_code, second.status_code) == (200, 429)
    assert client.app.state.backend.failures == 0
    assert len({redis_cluster.node_of(f"{cluster_prefix}rl:{{{i}}}").port for i in ids}) > 1
