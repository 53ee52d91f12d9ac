"""The Redis backend's own contract: config, keys with TTLs, and what happens when Redis fails.

Failure tests run their own ``redis-server`` on a free port, stop it and start
it again; nothing here stops the shared Redis.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from src.config import BudgetConfig, StateConfig
from src.state.redis_scripts import SCRIPTS
from src.state.redis_state import RedisState
from src.state.redis_store import RedisStore
from src.state.spend.redis import RedisSpendStore
from src.tools.keys import key_sha256, new_key
from tests.support.configs import UPSTREAM, log_lines, make_config
from tests.support.payloads import chat_body, completion
from tests.support.redis_servers import RedisServer


def redis_state(url: str, prefix: str = "gwtest:fail:", **extra: Any) -> dict[str, Any]:
    return {"backend": "redis", "redis_url": url, "key_prefix": prefix, **extra}


def state_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gateway.state"]


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a hung Redis)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


async def test_counters_live_under_the_key_prefix_with_a_ttl(
    gateway_client, upstream, tmp_path, provider_key, redis_url, redis_prefix
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    config = make_config(
        tmp_path,
        rate_limit={"requests_per_minute": 10, "tokens_per_minute": 1000},
        state=redis_state(redis_url, redis_prefix),
    )
    client = await gateway_client(config)
    response = await client.post(
        "/v1/chat/completions", json=chat_body(), headers={"x-client-id": "team-a"}
    )
    assert response.status_code == 200
    await client.app.state.backend.flush()  # the reconcile that gave tokens back
    with redis.Redis.from_url(redis_url) as direct:
        keys = sorted(k.decode() for k in direct.scan_iter(match=f"{redis_prefix}*"))
        assert keys == [f"{redis_prefix}rl:{{team-a}}:req", f"{redis_prefix}rl:{{team-a}}:tok"]
        for key in keys:
            assert 0 < direct.pttl(key) <= 61_000
        assert direct.zcard(keys[0]) == 1
        assert int(direct.hget(keys[1], "total")) == 16  # the reservation, reconciled


async def test_fail_open_serves_without_limits_while_redis_is_down_then_counts_again(
    gateway_client, upstream, tmp_path, provider_key, redis_server: RedisServer, caplog
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    config = make_config(
        tmp_path,
        rate_limit={"requests_per_minute": 2},
        state=redis_state(redis_server.url, on_error="fail_open"),
    )
    client = await gateway_client(config)
    backend = client.app.state.backend
    assert (await client.post("/v1/chat/completions", json=chat_body())).status_code == 200

    redis_server.stop()
    started = time.monotonic()
    down = [await client.post("/v1/chat/completions", json=chat_body()) for _ in range(3)]
    assert time.monotonic() - started < 5
    assert [r.status_code for r in down] == [200, 200, 200]  # beyond the limit of 2: not enforced
    assert backend.failures == 3
    warnings = state_warnings(caplog)
    assert len(warnings) == 3 and all("redis unavailable" in w for w in warnings)
    assert "fail_open" in warnings[0]

    redis_server.start()  # empty: nothing persisted
    back = [await client.post("/v1/chat/completions", json=chat_body()) for _ in range(3)]
    assert [r.status_code for r in back] == [200, 200, 429]
    assert back[0].headers["x-ratelimit-remaining-requests"] == "1"
    assert backend.failures == 3
    client.app.state.telemetry.writer.close()
    lines = log_lines(config)
    assert len(lines) == 7  # the failures went to stderr, not into the telemetry log
    assert not any("redis" in str(line).lower() for line in lines)


async def test_fail_closed_refuses_with_503_while_redis_is_down_then_serves_again(
    gateway_client, upstream, tmp_path, provider_key, redis_server: RedisServer
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    config = make_config(tmp_path, state=redis_state(redis_server.url, on_error="fail_closed"))
    client = await gateway_client(config)
    assert (await client.post("/v1/chat/completions", json=chat_body())).status_code == 200

    redis_server.stop()
    refused = await client.post("/v1/chat/completions", json=chat_body())
    assert refused.status_code == 503
    error = refused.json()["error"]
    assert error["type"] == "limiter_unavailable"
    assert error["message"] == (
        "The rate limiter is unavailable, so the request was not served; retry shortly."
    )
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    seed = await client.post("/v1/chat", json={"client_id": "c1", **chat_body()})
    assert seed.status_code == 503
    assert set(seed.json()["error"]) == {"type", "message"}
    assert len(upstream.calls) == 1  # nothing reached the provider while Redis was down
    assert client.app.state.backend.failures == 2

    redis_server.start()
    assert (await client.post("/v1/chat/completions", json=chat_body())).status_code == 200
    client.app.state.telemetry.writer.close()
    outcomes = [(line["status"], line["error_type"]) for line in log_lines(config)]
    assert outcomes == [
        (200, None),
        (503, "limiter_unavailable"),
        (503, "limiter_unavailable"),
        (200, None),
    ]


async def test_the_gateway_starts_while_redis_is_down_and_uses_it_once_it_is_up(
    gateway_client, upstream, tmp_path, provider_key, redis_server: RedisServer, caplog
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    redis_server.stop()
    config = make_config(
        tmp_path,
        rate_limit={"requests_per_minute": 1},
        state=redis_state(redis_server.url, on_error="fail_closed"),
    )
    client = await gateway_client(config)
    assert any("not reachable at start-up" in w for w in state_warnings(caplog))
    assert (await client.post("/v1/chat/completions", json=chat_body())).status_code == 503

    redis_server.start()
    first = await client.post("/v1/chat/completions", json=chat_body())
    second = await client.post("/v1/chat/completions", json=chat_body())
    assert (first.status_code, second.status_code) == (200, 429)


@pytest.mark.parametrize(("on_error", "status"), [("fail_open", 200), ("fail_closed", 503)])
async def test_a_redis_that_never_answers_costs_a_short_timeout_not_a_hang(
    gateway_client, upstream, tmp_path, provider_key, blackhole, on_error, status
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    url = f"redis://127.0.0.1:{blackhole}/0"
    config = make_config(tmp_path, state=redis_state(url, on_error=on_error, timeout_s=0.2))
    client = await gateway_client(config)
    started = time.monotonic()
    responses = await asyncio.gather(
        *(client.post("/v1/chat/completions", json=chat_body()) for _ in range(5))
    )
    assert time.monotonic() - started < 3
    assert [r.status_code for r in responses] == [status] * 5


async def test_scripts_are_loaded_again_after_redis_forgets_them(
    gateway_client, upstream, tmp_path, provider_key, redis_server: RedisServer
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    config = make_config(
        tmp_path, rate_limit={"requests_per_minute": 2}, state=redis_state(redis_server.url)
    )
    client = await gateway_client(config)
    assert (await client.post("/v1/chat/completions", json=chat_body())).status_code == 200
    with redis.Redis.from_url(redis_server.url) as direct:
        direct.script_flush()
    statuses = [
        (await client.post("/v1/chat/completions", json=chat_body())).status_code for _ in range(2)
    ]
    assert statuses == [200, 429]
    assert client.app.state.backend.failures == 0


@pytest.mark.parametrize(("backend", "warned"), [("memory", True), ("redis", False)])
async def test_several_workers_on_the_memory_backend_get_one_warning_line(
    gateway_client, tmp_path, monkeypatch, caplog, request, backend, warned
):
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    state: dict[str, Any] = {"backend": "memory"}
    if backend == "redis":
        state = redis_state(
            request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        )
    caplog.set_level(logging.WARNING, logger="gateway.state")
    await gateway_client(make_config(tmp_path, state=state))
    warnings = [w for w in state_warnings(caplog) if "each worker enforces its own limits" in w]
    assert len(warnings) == (1 if warned else 0)


async def test_a_redis_restart_between_requests_costs_no_failure(
    gateway_client, upstream, tmp_path, provider_key, redis_server: RedisServer
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    config = make_config(
        tmp_path, rate_limit={"requests_per_minute": 5}, state=redis_state(redis_server.url)
    )
    client = await gateway_client(config)
    assert (await client.post("/v1/chat/completions", json=chat_body())).status_code == 200
    redis_server.stop()
    redis_server.start()  # the pooled connection is dead and the new server has no scripts
    after = await client.post("/v1/chat/completions", json=chat_body())
    assert after.status_code == 200
    assert after.headers["x-ratelimit-remaining-requests"] == "4"
    assert client.app.state.backend.failures == 0


async def test_spend_lives_under_the_utc_day_and_month_of_the_redis_clock(
    gateway_client, upstream, tmp_path, provider_key, redis_url, redis_prefix
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    key = new_key()
    config = make_config(
        tmp_path,
        pricing={"primary": {"up-model-a": {"input_usd_per_mtok": 2, "output_usd_per_mtok": 10}}},
        clients={"acme": {"key_sha256": key_sha256(key), "budget": {"usd_per_day": 1}}},
        state=redis_state(redis_url, redis_prefix),
    )
    client = await gateway_client(config)
    headers = {"Authorization": f"Bearer {key}"}
    assert (
        await client.post("/v1/chat/completions", json=chat_body(), headers=headers)
    ).status_code == 200
    await client.app.state.backend.flush()  # the charge, which cost less than the hold
    with redis.Redis.from_url(redis_url) as direct:
        seconds = direct.time()[0]
        month = f"{redis_prefix}spend:{{acme}}:m:{time.strftime('%Y-%m', time.gmtime(seconds))}"
        assert float(direct.hget(month, f"d:{seconds // 86400}")) == pytest.approx(72 / 1_000_000)
        assert float(direct.hget(month, "month")) == pytest.approx(72 / 1_000_000)
        assert 31 * 86_400 < direct.ttl(month) <= 32 * 86_400
        assert not direct.exists(f"{redis_prefix}spend:{{acme}}:holds")  # nothing in flight


async def test_spend_in_redis_survives_a_gateway_restart(redis_url, redis_prefix):
    config = StateConfig(backend="redis", redis_url=redis_url, key_prefix=redis_prefix)
    budget = BudgetConfig(usd_per_day=1.0)
    first = RedisState(RedisStore(config, SCRIPTS))
    verdict = await RedisSpendStore(first).admit("acme", budget, 0.6)
    await RedisSpendStore(first).settle(verdict.hold, 0.9)
    await first.aclose()
    await first.store.aclose()

    second = RedisState(RedisStore(config, SCRIPTS))  # another process, after a restart
    store = RedisSpendStore(second)
    assert (await store.spent("acme")).day_usd == pytest.approx(0.9)
    admitted = await store.admit("acme", budget, 0.2)
    assert admitted.allowed  # 0.9 < 1: one more may start
    assert not (await store.admit("acme", budget, 0.2)).allowed  # 0.9 + 0.2 held >= 1
    await second.aclose()
    await second.store.aclose()


async def test_fail_closed_refuses_a_keyed_client_while_the_budget_store_is_down(
    gateway_client, upstream, tmp_path, provider_key, redis_server: RedisServer
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    key = new_key()
    config = make_config(
        tmp_path,
        clients={"acme": {"key_sha256": key_sha256(key), "budget": {"usd_per_day": 1}}},
        state=redis_state(redis_server.url, on_error="fail_closed"),
    )
    client = await gateway_client(config)
    headers = {"Authorization": f"Bearer {key}"}
    redis_server.stop()
    refused = await client.post("/v1/chat/completions", json=chat_body(), headers=headers)
    assert refused.status_code == 503
    assert refused.json()["error"]["type"] == "limiter_unavailable"
    assert len(upstream.calls) == 0
    redis_server.start()
    assert (
        await client.post("/v1/chat/completions", json=chat_body(), headers=headers)
    ).status_code == 200
