"""Several real gateway processes, or workers, sharing one Redis enforce one limit, exactly."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from src.tools.keys import key_sha256, new_key
from tests.support.gateway import GatewayProcess, running_gateway
from tests.support.loopback import free_port

pytestmark = pytest.mark.slow

LIMIT = 40
BURST = 120


def stub_config(tmp_path: Path, state: dict[str, Any], rpm: int = LIMIT) -> dict[str, Any]:
    """Stub mode (the key variable is unset), so no upstream is needed."""
    return {
        "providers": {
            "stub": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "GATEWAY_TEST_UNSET_KEY"}
        },
        "aliases": {"default-chat": {"provider": "stub", "model": "m"}},
        "rate_limit": {"requests_per_minute": rpm},
        "log_file": str(tmp_path / "gateway.log"),
        "state": state,
    }


def output(gateway: GatewayProcess) -> str:
    """What the gateway process wrote on stdout and stderr."""
    return gateway.stdout() + gateway.stderr()


async def burst(urls: list[str], count: int, client_id: str) -> list[tuple[str, int]]:
    """``count`` concurrent requests, spread round-robin over ``urls``: (url, status) each."""
    body = {"model": "default-chat", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-client-id": client_id}
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one(url: str) -> tuple[str, int]:
            response = await client.post(f"{url}/v1/chat/completions", json=body, headers=headers)
            return url, response.status_code

        return await asyncio.gather(*(one(urls[i % len(urls)]) for i in range(count)))


async def test_two_gateways_on_one_redis_admit_exactly_the_limit_of_a_burst(
    tmp_path, launch_gateway, redis_url, redis_prefix
):
    state = {"backend": "redis", "redis_url": redis_url, "key_prefix": redis_prefix, "timeout_s": 5}
    config = stub_config(tmp_path, state)
    first, second = launch_gateway(config), launch_gateway(config)

    results = await burst([first.base_url, second.base_url], BURST, "shared-client")
    statuses = [status for _, status in results]
    assert statuses.count(200) == LIMIT
    assert statuses.count(429) == BURST - LIMIT
    assert {url for url, _ in results} == {first.base_url, second.base_url}


async def test_two_gateways_on_one_redis_hold_a_budget_exactly_in_a_burst(
    tmp_path, launch_gateway, redis_url, redis_prefix
):
    key = new_key()
    # The stub's answer is 17 words: with max_tokens=17 each request's held estimate equals its
    # real cost, so the spend is the same whenever holds settle, and the budget fits exactly 6.
    body = {
        "model": "default-chat",
        "max_tokens": 17,
        "messages": [{"role": "user", "content": "hi"}],
    }
    cost = (2 * 1 + 17 * 1) / 1_000_000
    config = stub_config(
        tmp_path,
        {"backend": "redis", "redis_url": redis_url, "key_prefix": redis_prefix, "timeout_s": 5},
        10**6,
    )
    config["pricing"] = {"stub": {"m": {"input_usd_per_mtok": 1, "output_usd_per_mtok": 1}}}
    config["clients"] = {
        "acme": {"key_sha256": key_sha256(key), "budget": {"usd_per_day": 5.5 * cost}}
    }
    first, second = launch_gateway(config), launch_gateway(config)

    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=BURST)) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    f"{(first, second)[i % 2].base_url}/v1/chat/completions",
                    json=body,
                    headers=headers,
                )
                for i in range(BURST)
            )
        )
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 6
    assert statuses.count(429) == BURST - 6
    assert {r.json()["error"]["type"] for r in responses if r.status_code == 429} == {
        "budget_exceeded"
    }
    assert sum(
        float(r.headers["x-gateway-cost-usd"]) for r in responses if r.status_code == 200
    ) == pytest.approx(6 * cost)


async def test_two_workers_on_redis_admit_exactly_the_limit_and_do_not_warn(
    tmp_path, redis_url, redis_prefix
):
    state = {"backend": "redis", "redis_url": redis_url, "key_prefix": redis_prefix, "timeout_s": 5}
    with running_gateway(stub_config(tmp_path, state), tmp_path, workers=2) as gateway:
        results = await burst([gateway.base_url], BURST, "workers-client")
    assert [status for _, status in results].count(200) == LIMIT
    assert "each worker enforces its own limits" not in output(gateway)


async def test_two_workers_on_the_memory_backend_warn_once_each_at_start_up(tmp_path):
    config = stub_config(tmp_path, {"backend": "memory"})
    with running_gateway(config, tmp_path, workers=2, command="uvicorn") as gateway:

        def warnings() -> list[str]:
            lines = output(gateway).splitlines()
            return [line for line in lines if "each worker enforces its own limits" in line]

        deadline = time.monotonic() + 15
        while len(warnings()) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    assert len(warnings()) == 2  # one line per worker process
    assert warnings()[0].startswith("gateway: warning: state.backend is memory with 2 workers")


async def test_a_gateway_starts_without_redis_and_fails_closed_with_a_line_on_stderr(
    tmp_path, launch_gateway
):
    state = {
        "backend": "redis",
        "redis_url": f"redis://127.0.0.1:{free_port()}/0",
        "on_error": "fail_closed",
    }
    gateway = launch_gateway(stub_config(tmp_path, state))
    response = httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json={"model": "default-chat", "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "limiter_unavailable"
    gateway.stop()
    stderr = gateway.stderr()
    assert "gateway: redis not reachable at start-up" in stderr
    assert "gateway: redis unavailable (admit: ConnectionError" in stderr
    log = (tmp_path / "gateway.log").read_text()
    assert "limiter_unavailable" in log and "redis" not in log.lower()
