"""Rate limits through the app in-process, on each state backend: exact under a concurrent
burst, tokens counted from the real usage, a request larger than the whole limit."""

from __future__ import annotations

import asyncio

import httpx

from tests.support.configs import UPSTREAM, make_config
from tests.support.payloads import chat_body, completion


async def test_concurrent_burst_admits_exactly_the_limit(
    gateway_client, upstream, tmp_path, provider_key, state
):
    async def slow(request):
        await asyncio.sleep(0.05)
        return httpx.Response(200, json=completion())

    upstream.post(f"{UPSTREAM}/chat/completions").mock(side_effect=slow)
    config = make_config(tmp_path, rate_limit={"requests_per_minute": 25}, state=state)
    client = await gateway_client(config)
    responses = await asyncio.gather(
        *(client.post("/v1/chat/completions", json=chat_body()) for _ in range(100))
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 25
    assert statuses.count(429) == 75


async def test_token_limit_through_the_app_counts_real_usage(
    gateway_client, upstream, tmp_path, provider_key, state
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())  # usage total 16
    config = make_config(
        tmp_path, rate_limit={"requests_per_minute": 100, "tokens_per_minute": 1000}, state=state
    )
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=chat_body(max_tokens=500))
    assert response.headers["x-ratelimit-limit-tokens"] == "1000"
    # at admission: 1000 - (2 prompt + 500 reserved); after the answer only the real 16 remain counted
    assert response.headers["x-ratelimit-remaining-tokens"] == "498"
    after = await client.post("/v1/chat/completions", json=chat_body(max_tokens=1))
    assert after.headers["x-ratelimit-remaining-tokens"] == str(1000 - 16 - 3)


async def test_max_tokens_above_the_whole_limit_runs_alone_in_an_empty_window(
    gateway_client, upstream, tmp_path, provider_key, state
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())  # usage total 16
    config = make_config(
        tmp_path, rate_limit={"requests_per_minute": 100, "tokens_per_minute": 100}, state=state
    )
    client = await gateway_client(config)
    first = await client.post("/v1/chat/completions", json=chat_body(max_tokens=5000))
    assert first.status_code == 200
    assert first.headers["x-ratelimit-remaining-tokens"] == "0"
    refused = await client.post("/v1/chat/completions", json=chat_body(max_tokens=5000))
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_exceeded"
    assert (
        refused.json()["error"]["message"]
        == "Token rate exceeded for client_id anonymous (100 tokens/min)."
    )
    assert len(upstream.calls) == 1
