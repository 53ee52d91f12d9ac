"""The limiter: exact under concurrency, a sliding window, tokens reserved then reconciled."""

from __future__ import annotations

import asyncio

import pytest

from src.limiter import Limits
from src.limiter.memory import MemoryLimiter
from tests.conftest import UPSTREAM, chat_body, completion, make_config


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_burst_admits_exactly_the_limit(
    gateway_client, upstream, tmp_path, provider_key
):
    async def slow(request):
        await asyncio.sleep(0.05)
        import httpx

        return httpx.Response(200, json=completion())

    upstream.post(f"{UPSTREAM}/chat/completions").mock(side_effect=slow)
    client = await gateway_client(make_config(tmp_path, rate_limit={"requests_per_minute": 25}))
    responses = await asyncio.gather(
        *(client.post("/v1/chat/completions", json=chat_body()) for _ in range(100))
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 25
    assert statuses.count(429) == 75


async def test_window_slides_rather_than_resetting_at_a_boundary():
    clock = Clock()
    limiter = MemoryLimiter(clock)
    limits = Limits(requests_per_minute=3)
    for offset in (0, 20, 40):
        clock.now = 1000 + offset
        assert (await limiter.admit("c", limits, 0)).allowed
    clock.now = 1059
    refused = await limiter.admit("c", limits, 0)
    assert not refused.allowed and refused.exceeded == "requests"
    assert refused.retry_after_s == 1
    clock.now = 1060.5  # the first admission has left the 60 s window, the others have not
    assert (await limiter.admit("c", limits, 0)).allowed
    assert not (await limiter.admit("c", limits, 0)).allowed


async def test_no_sixty_second_span_holds_more_than_the_limit():
    clock = Clock()
    limiter = MemoryLimiter(clock)
    limits = Limits(requests_per_minute=10)
    admitted: list[float] = []
    for step in range(0, 3000):
        clock.now = 1000 + step * 0.1
        if (await limiter.admit("c", limits, 0)).allowed:
            admitted.append(clock.now)
    for i, start in enumerate(admitted):
        inside = [t for t in admitted[i:] if t < start + 60]
        assert len(inside) <= 10


async def test_tokens_are_reserved_at_admission_and_reconciled_with_usage():
    clock = Clock()
    limiter = MemoryLimiter(clock)
    limits = Limits(requests_per_minute=100, tokens_per_minute=1000)
    first = await limiter.admit("c", limits, 600)
    assert first.allowed and first.quota.remaining_tokens == 400
    refused = await limiter.admit("c", limits, 600)
    assert not refused.allowed and refused.exceeded == "tokens"
    await limiter.reconcile(first.reservation, 100)
    assert (await limiter.peek("c", limits)).remaining_tokens == 900
    assert (await limiter.admit("c", limits, 600)).allowed


async def test_a_refusal_counts_nothing():
    limiter = MemoryLimiter(Clock())
    limits = Limits(requests_per_minute=5, tokens_per_minute=100)
    assert not (await limiter.admit("c", limits, 500)).allowed
    quota = await limiter.peek("c", limits)
    assert quota.remaining_requests == 5 and quota.remaining_tokens == 100


async def test_idle_clients_are_forgotten():
    clock = Clock()
    limiter = MemoryLimiter(clock)
    limits = Limits(requests_per_minute=5)
    for i in range(5000):
        await limiter.admit(f"client-{i}", limits, 0)
    clock.now += 120
    for _ in range(5000):
        await limiter.admit("steady", Limits(requests_per_minute=10**6), 0)
    assert len(limiter._windows) < 100


async def test_token_limit_through_the_app_counts_real_usage(
    gateway_client, upstream, tmp_path, provider_key
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())  # usage total 16
    config = make_config(
        tmp_path, rate_limit={"requests_per_minute": 100, "tokens_per_minute": 1000}
    )
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=chat_body(max_tokens=500))
    assert response.headers["x-ratelimit-limit-tokens"] == "1000"
    # at admission: 1000 - (2 prompt + 500 reserved); after the answer only the real 16 remain counted
    assert response.headers["x-ratelimit-remaining-tokens"] == "498"
    after = await client.post("/v1/chat/completions", json=chat_body(max_tokens=1))
    assert after.headers["x-ratelimit-remaining-tokens"] == str(1000 - 16 - 3)


async def test_max_tokens_above_the_whole_limit_runs_alone_in_an_empty_window(
    gateway_client, upstream, tmp_path, provider_key
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())  # usage total 16
    config = make_config(tmp_path, rate_limit={"requests_per_minute": 100, "tokens_per_minute": 100})
    client = await gateway_client(config)
    first = await client.post("/v1/chat/completions", json=chat_body(max_tokens=5000))
    assert first.status_code == 200
    assert first.headers["x-ratelimit-remaining-tokens"] == "0"
    refused = await client.post("/v1/chat/completions", json=chat_body(max_tokens=5000))
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_exceeded"
    assert refused.json()["error"]["message"] == "Token rate exceeded for client_id anonymous (100 tokens/min)."
    assert len(upstream.calls) == 1


@pytest.mark.parametrize("tokens", [0, 50])
async def test_concurrent_token_reservations_never_overshoot(tokens):
    limiter = MemoryLimiter(Clock())
    limits = Limits(requests_per_minute=10**6, tokens_per_minute=1000)
    decisions = await asyncio.gather(*(limiter.admit("c", limits, 100 + tokens) for _ in range(50)))
    admitted = sum(d.allowed for d in decisions)
    assert admitted * (100 + tokens) <= 1000
    assert admitted == 1000 // (100 + tokens)
