"""Waiting for capacity (``queue_timeout_ms``), end to end through a gateway process: exact against the
limit, first come first served per client under a concurrent burst (with the memory and the Redis
backend), bounded, and left at once by a client that disconnects."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from src.pipeline.waiting import CapacityQueue
from src.state.limiter import Limits
from src.state.limiter.memory import MemoryLimiter
from tests.support.configs import stub_config
from tests.support.gateway import running_gateway
from tests.support.upstream import FakeUpstream


def _clients(names: list[str], **spec: Any) -> dict[str, Any]:
    return {
        name: {"key_sha256": hashlib.sha256(f"sk-{name}".encode()).hexdigest(), **spec}
        for name in names
    }


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def _burst(base: str, plan: list[tuple[str, str]], gap_s: float = 0.0) -> list[Any]:
    """Send ``(client, content)`` requests concurrently (``gap_s`` apart); answers and times."""
    async with httpx.AsyncClient(base_url=base, timeout=20) as http:
        started = time.monotonic()

        async def one(index: int, client: str, content: str) -> tuple[str, int, float, Any]:
            await asyncio.sleep(index * gap_s)
            answer = await http.post(
                "/v1/chat/completions",
                json={"model": "default-chat", "max_tokens": 45,
                      "messages": [{"role": "user", "content": content}]},
                headers={"authorization": f"Bearer sk-{client}"},
            )  # fmt: skip
            return client, answer.status_code, time.monotonic() - started, answer.json()

        return await asyncio.gather(*(one(i, c, t) for i, (c, t) in enumerate(plan)))


@pytest.mark.slow
def test_a_burst_waits_then_gets_exactly_the_limit_and_429s(
    tmp_path: Path, state: dict[str, Any]
) -> None:
    names = ["a", "b", "c"]
    config = stub_config(
        tmp_path,
        state=state,
        clients=_clients(names, rate_limit={"requests_per_minute": 3}, queue_timeout_ms=800),
    )
    with running_gateway(config, tmp_path) as gateway:
        base = gateway.base_url
        results = asyncio.run(_burst(base, [(n, "hi") for n in names for _ in range(6)]))
        metrics = httpx.get(base + "/metrics", timeout=10).text
    for name in names:
        statuses = sorted(status for client, status, _, _ in results if client == name)
        assert statuses == [200, 200, 200, 429, 429, 429]
    refused = [(elapsed, body) for _, status, elapsed, body in results if status == 429]
    assert all(elapsed >= 0.7 for elapsed, _ in refused)  # they waited for their timeout
    assert {body["error"]["message"] for _, body in refused} == {
        f"Request rate exceeded for client_id {n} (3 req/min)." for n in names
    }
    assert _metric(metrics, 'gateway_queue_outcomes_total{outcome="timed_out"}') == 9
    assert _metric(metrics, "gateway_queue_length") == 0


@pytest.mark.slow
def test_capacity_freed_by_finished_requests_serves_waiters_in_arrival_order(
    tmp_path: Path, state: dict[str, Any]
) -> None:
    names = ["a", "b", "c"]
    with FakeUpstream() as upstream:
        upstream.behave(first_delay_s=0.3, prompt_tokens=1, completion_tokens=1)
        config = stub_config(
            tmp_path,
            providers={"up": {"base_url": upstream.base_url, "api_key_env": "GW_WAIT_KEY"}},
            aliases={"default-chat": {"provider": "up", "model": "m"}},
            state=state,
            # "hi" is 2 tokens, max_tokens 45: 47 reserved, so two requests fit in 100 at once;
            # each answer reconciles to 2 tokens, which lets the next waiter in
            clients=_clients(
                names,
                rate_limit={"requests_per_minute": 100, "tokens_per_minute": 100},
                queue_timeout_ms=10_000,
            ),
        )
        plan = [(name, f"{name}{i}") for i in range(5) for name in names]
        with running_gateway(config, tmp_path, env={"GW_WAIT_KEY": "sk-up"}) as gateway:
            base = gateway.base_url
            results = asyncio.run(_burst(base, plan, gap_s=0.02))
        order = [r.body["messages"][0]["content"] for r in upstream.received()]
    assert [status for _, status, _, _ in results] == [200] * 15
    for name in names:
        assert [c for c in order if c.startswith(name)] == [f"{name}{i}" for i in range(5)]
    # two at a time per client, all clients at once: three waves of 0.3 s, not fifteen
    assert max(elapsed for _, _, elapsed, _ in results) < 3.0


@pytest.mark.slow
def test_the_queue_is_bounded_and_a_client_that_leaves_leaves_it(tmp_path: Path) -> None:
    config = stub_config(
        tmp_path,
        max_queue_length=2,
        clients=_clients(["a"], rate_limit={"requests_per_minute": 1}, queue_timeout_ms=30_000),
    )
    body = {"model": "default-chat", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": "Bearer sk-a"}
    with running_gateway(config, tmp_path) as gateway:
        base = gateway.base_url
        assert (
            httpx.post(base + "/v1/chat/completions", json=body, headers=headers).status_code == 200
        )

        async def leave_early() -> list[Any]:
            async with httpx.AsyncClient(base_url=base) as http:

                async def waiting() -> Any:
                    try:
                        return await http.post("/v1/chat/completions", json=body,
                                               headers=headers, timeout=1.0)  # fmt: skip
                    except httpx.ReadTimeout:
                        return "left"

                waiters = [asyncio.create_task(waiting()) for _ in range(2)]
                await asyncio.sleep(0.3)
                full = await http.post("/v1/chat/completions", json=body, headers=headers,
                                       timeout=5)  # fmt: skip
                return [full, *(await asyncio.gather(*waiters))]

        full, *waited = asyncio.run(leave_early())
        assert full.status_code == 429 and waited == ["left", "left"]
        deadline = time.monotonic() + 5
        while True:
            metrics = httpx.get(base + "/metrics", timeout=10).text
            if _metric(metrics, 'gateway_queue_outcomes_total{outcome="left"}') == 2:
                break
            assert time.monotonic() < deadline, "the waiters did not leave the queue"
            time.sleep(0.05)
    assert _metric(metrics, 'gateway_queue_outcomes_total{outcome="full"}') == 1
    assert _metric(metrics, "gateway_queue_length") == 0


async def test_higher_priority_lanes_are_served_first_when_capacity_frees() -> None:
    now = [0.0]
    limiter = MemoryLimiter(clock=lambda: now[0])
    queue = CapacityQueue(limiter)
    limits = Limits(1)
    served: list[str] = []

    async def wait(client: str, priority: int) -> None:
        refused = await limiter.admit(client, limits, 0)
        decision = await queue.wait(client, limits, 0, refused, timeout_s=5,
                                    priority=priority, max_length=10)  # fmt: skip
        assert decision.allowed
        served.append(client)

    for client in ("low", "high"):
        assert (await limiter.admit(client, limits, 0)).allowed
    tasks = [asyncio.create_task(wait("low", 0)), asyncio.create_task(wait("high", 5))]
    await asyncio.sleep(0.05)
    assert queue.waiting == 2 and served == []
    now[0] = 61.0  # both windows move on at the same moment
    queue.notify("low")
    queue.notify("high")
    await asyncio.gather(*tasks)
    assert served == ["high", "low"]
