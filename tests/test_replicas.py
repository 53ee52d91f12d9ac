"""Several real gateway processes (``uvicorn``) sharing one Redis enforce one limit, exactly."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from src.tools.keys import key_sha256, new_key
from tests.conftest import free_port
from tests.gateway_process import GatewayProcess, gateway_process

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


@pytest.fixture
def gateways() -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for gateway in started:
        gateway.stop()


def start(gateways: list[GatewayProcess], tmp_path: Path, config: dict[str, Any]) -> GatewayProcess:
    path = tmp_path / f"config-{len(gateways)}.json"
    path.write_text(json.dumps(config))
    gateway = GatewayProcess(path)
    gateways.append(gateway)
    gateway.start()
    return gateway


def uvicorn_log(tmp_path: Path, base_url: str) -> str:
    """What ``gateway_process`` captured of the server's output (stdout and stderr)."""
    return (tmp_path / f"uvicorn-{base_url.rsplit(':', 1)[1]}.log").read_text(errors="replace")


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
    tmp_path, gateways, redis_url, redis_prefix
):
    state = {"backend": "redis", "redis_url": redis_url, "key_prefix": redis_prefix, "timeout_s": 5}
    config = stub_config(tmp_path, state)
    first, second = start(gateways, tmp_path, config), start(gateways, tmp_path, config)

    results = await burst([first.url, second.url], BURST, "shared-client")
    statuses = [status for _, status in results]
    assert statuses.count(200) == LIMIT
    assert statuses.count(429) == BURST - LIMIT
    assert {url for url, _ in results} == {first.url, second.url}


async def test_two_gateways_on_one_redis_hold_a_budget_exactly_in_a_burst(
    tmp_path, gateways, redis_url, redis_prefix
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
    first, second = start(gateways, tmp_path, config), start(gateways, tmp_path, config)

    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=BURST)) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    f"{(first, second)[i % 2].url}/v1/chat/completions", json=body, headers=headers
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
    with gateway_process(tmp_path, stub_config(tmp_path, state), workers=2) as url:
        results = await burst([url], BURST, "workers-client")
    assert [status for _, status in results].count(200) == LIMIT
    assert "each worker enforces its own limits" not in uvicorn_log(tmp_path, url)


async def test_two_workers_on_the_memory_backend_warn_once_each_at_start_up(tmp_path):
    config = stub_config(tmp_path, {"backend": "memory"})
    with gateway_process(tmp_path, config, workers=2) as url:

        def warnings() -> list[str]:
            lines = uvicorn_log(tmp_path, url).splitlines()
            return [line for line in lines if "each worker enforces its own limits" in line]

        deadline = time.monotonic() + 15
        while len(warnings()) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    assert len(warnings()) == 2  # one line per worker process
    assert warnings()[0].startswith("gateway: warning: state.backend is memory with 2 workers")


async def test_a_gateway_starts_without_redis_and_fails_closed_with_a_line_on_stderr(
    tmp_path, gateways
):
    state = {
        "backend": "redis",
        "redis_url": f"redis://127.0.0.1:{free_port()}/0",
        "on_error": "fail_closed",
    }
    gateway = start(gateways, tmp_path, stub_config(tmp_path, state))
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
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
