"""One Redis call per request: admission in one script, settlements deferred and folded.

A settlement that gives back (fewer tokens than reserved, a cost below the hold) waits
for the client's next call or the flusher (``FLUSH_AFTER_S``, at most ``MAX_WAITING``
waiting, all flushed at shutdown); one that takes more is sent at once. A gateway that
dies leaves the limits and the spend stricter, never looser. Each test runs its own
``redis-server``, so the server's command counts are its own.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from src.config import GatewayConfig
from src.state import redis_state
from src.tools.keys import key_sha256, new_key
from tests.support.configs import UPSTREAM, make_config
from tests.support.gateway import GatewayProcess
from tests.support.payloads import chat_body, completion
from tests.support.redis_servers import RedisServer

PRICES = {"primary": {"up-model-a": {"input_usd_per_mtok": 1, "output_usd_per_mtok": 1}}}
KEY = new_key()
HEADERS = {"Authorization": f"Bearer {KEY}"}
# The upstream's usage: 11 prompt + 5 completion tokens, so 16 tokens and $0.000016.
USED, COST = 16, 16 / 1_000_000


def keyed_config(tmp_path: Path, url: str, **overrides: Any) -> GatewayConfig:
    settings: dict[str, Any] = {
        "rate_limit": {"requests_per_minute": 1000, "tokens_per_minute": 100_000},
        "pricing": PRICES,
        "clients": {"acme": {"key_sha256": key_sha256(KEY), "budget": {"usd_per_day": 100}}},
        "state": {"backend": "redis", "redis_url": url, "key_prefix": "gw:", "timeout_s": 5},
    }
    return make_config(tmp_path, **(settings | overrides))


def script_calls(url: str) -> int:
    with redis.Redis.from_url(url) as direct:
        stats = direct.info("commandstats")
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )


def reserved_tokens(url: str) -> int:
    with redis.Redis.from_url(url) as direct:
        return int(direct.hget("gw:rl:{acme}:tok", "total") or 0)


def spent_today(url: str) -> float:
    with redis.Redis.from_url(url) as direct:
        seconds = direct.time()[0]
        month = time.strftime("%Y-%m", time.gmtime(seconds))
        return float(direct.hget(f"gw:spend:{{acme}}:m:{month}", f"d:{seconds // 86_400}") or 0)


async def eventually(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


@pytest.fixture
def no_timed_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settlements wait for the client's next call, the bound or shutdown: not for time."""
    monkeypatch.setattr(redis_state, "FLUSH_AFTER_S", 3600.0)


async def test_a_busy_keyed_client_costs_one_script_call_per_request(
    gateway_client, upstream, tmp_path, provider_key, redis_server: RedisServer, no_timed_flush
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    client = await gateway_client(keyed_config(tmp_path, redis_server.url))
    before = script_calls(redis_server.url)
    for _ in range(20):
        response = await client.post(
            "/v1/chat/completions", json=chat_body(max_tokens=100), headers=HEADERS
        )
        assert response.status_code == 200
    # each admission (budget hold, limit, token reservation) also carried the last settlement
    assert script_calls(redis_server.url) - before == 20
    assert reserved_tokens(redis_server.url) == 19 * USED + 2 + 100
    assert spent_today(redis_server.url) > 20 * COST  # the last request's estimate still held


async def test_a_give_back_goes_with_the_clients_next_call(
    gateway_client, upstream, tmp_path, provider_key, redis_server: RedisServer, no_timed_flush
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    client = await gateway_client(keyed_config(tmp_path, redis_server.url))
    first = await client.post(
        "/v1/chat/completions", json=chat_body(max_tokens=500), headers=HEADERS
    )
    assert first.headers["x-ratelimit-remaining-tokens"] == str(100_000 - 2 - 500)
    assert reserved_tokens(redis_server.url) == 502  # not given back yet: stricter meanwhile
    second = await client.post(
        "/v1/chat/completions", json=chat_body(max_tokens=1), headers=HEADERS
    )
    assert second.headers["x-ratelimit-remaining-tokens"] == str(100_000 - USED - 3)


async def test_a_give_back_lands_within_the_flush_interval_without_another_call(
    gateway_client, upstream, tmp_path, provider_key, redis_server: RedisServer
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    client = await gateway_client(keyed_config(tmp_path, redis_server.url))
    response = await client.post(
        "/v1/chat/completions", json=chat_body(max_tokens=500), headers=HEADERS
    )
    assert response.status_code == 200
    assert await eventually(lambda: reserved_tokens(redis_server.url) == USED)
    assert spent_today(redis_server.url) == pytest.approx(COST)


async def test_using_more_than_reserved_is_sent_at_once(
    gateway_client, upstream, tmp_path, provider_key, redis_server: RedisServer, no_timed_flush
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    client = await gateway_client(keyed_config(tmp_path, redis_server.url))
    # reserves 2 + 1 tokens and holds $0.000003; uses 16 tokens and costs $0.000016
    response = await client.post(
        "/v1/chat/completions", json=chat_body(max_tokens=1), headers=HEADERS
    )
    assert response.status_code == 200
    assert await eventually(lambda: reserved_tokens(redis_server.url) == USED)
    assert spent_today(redis_server.url) == pytest.approx(COST)


async def test_waiting_settlements_are_bounded_and_flushed_when_the_bound_is_reached(
    gateway_client,
    upstream,
    tmp_path,
    provider_key,
    redis_server: RedisServer,
    no_timed_flush,
    monkeypatch,
):
    # each request leaves two settlements waiting: its tokens and its charge
    monkeypatch.setattr(redis_state, "MAX_WAITING", 5)
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    keys = [new_key() for _ in range(3)]
    clients = {f"c{i}": {"key_sha256": key_sha256(key)} for i, key in enumerate(keys)}
    config = keyed_config(tmp_path, redis_server.url, clients=clients)
    client = await gateway_client(config)
    for key in keys[:2]:  # two clients: their give-backs wait, below the bound
        headers = {"Authorization": f"Bearer {key}"}
        await client.post("/v1/chat/completions", json=chat_body(max_tokens=500), headers=headers)
    await asyncio.sleep(0.2)
    with redis.Redis.from_url(redis_server.url) as direct:
        assert int(direct.hget("gw:rl:{c0}:tok", "total")) == 502
    headers = {"Authorization": f"Bearer {keys[2]}"}
    await client.post("/v1/chat/completions", json=chat_body(max_tokens=500), headers=headers)

    def all_given_back() -> bool:
        with redis.Redis.from_url(redis_server.url) as direct:
            totals = [direct.hget(f"gw:rl:{{c{i}}}:tok", "total") for i in range(3)]
        return all(int(total) == USED for total in totals)

    assert await eventually(all_given_back)


async def test_waiting_settlements_are_applied_at_shutdown(
    upstream, tmp_path, provider_key, redis_server: RedisServer, no_timed_flush
):
    from src.edge.app import create_app

    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    app = create_app(
        keyed_config(tmp_path, redis_server.url),
        transport=lambda spec: httpx.MockTransport(upstream.async_handler),
    )
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            response = await client.post(
                "/v1/chat/completions", json=chat_body(max_tokens=500), headers=HEADERS
            )
            assert response.status_code == 200
        assert reserved_tokens(redis_server.url) == 502
    assert reserved_tokens(redis_server.url) == USED
    assert spent_today(redis_server.url) == pytest.approx(COST)


@pytest.mark.slow
async def test_a_gateway_killed_after_answering_leaves_limits_and_spend_stricter(
    tmp_path, redis_server: RedisServer
):
    config = {
        "providers": {
            "stub": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "GATEWAY_TEST_UNSET_KEY"}
        },
        "aliases": {"default-chat": {"provider": "stub", "model": "m"}},
        "pricing": {"stub": {"m": {"input_usd_per_mtok": 1, "output_usd_per_mtok": 1}}},
        "rate_limit": {"requests_per_minute": 1000, "tokens_per_minute": 100_000},
        "clients": {"acme": {"key_sha256": key_sha256(KEY), "budget": {"usd_per_day": 100}}},
        "state": {"backend": "redis", "redis_url": redis_server.url, "key_prefix": "gw:"},
        "log_file": str(tmp_path / "gateway.log"),
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    gateway = GatewayProcess(path, tmp_path).start()
    body = {
        "model": "default-chat",
        "max_tokens": 500,
        "messages": [{"role": "user", "content": "hi"}],
    }
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body, headers=HEADERS)
    gateway.signal(signal.SIGKILL)
    gateway.stop()
    assert response.status_code == 200
    used = response.json()["usage"]["total_tokens"]  # the stub's 2 + 17
    cost = float(response.headers["x-gateway-cost-usd"])
    # whatever had been applied when it died: never less than was really used
    assert reserved_tokens(redis_server.url) in (used, 2 + 500)
    assert spent_today(redis_server.url) in (pytest.approx(cost), pytest.approx(502 / 1_000_000))


async def test_a_refusal_by_holds_in_flight_says_how_much_is_in_flight(
    gateway_client, upstream, tmp_path, provider_key, state
):
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.2)
        return httpx.Response(200, json=completion())

    upstream.post(f"{UPSTREAM}/chat/completions").mock(side_effect=slow)
    estimate = (2 + 500) / 1_000_000  # each request holds 2 prompt + 500 completion tokens
    config = make_config(
        tmp_path,
        pricing=PRICES,
        clients={
            "acme": {"key_sha256": key_sha256(KEY), "budget": {"usd_per_day": 2.5 * estimate}}
        },
        state=state,
    )
    client = await gateway_client(config)
    responses = await asyncio.gather(
        *(
            client.post("/v1/chat/completions", json=chat_body(max_tokens=500), headers=HEADERS)
            for _ in range(4)
        )
    )
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 429]
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["message"] == (
        "Budget exceeded for client_id acme: usd_per_day is $0.00 and $0.0015 is spent today"
        " (of which $0.0015 in flight). It resets at 00:00 UTC."
    )
