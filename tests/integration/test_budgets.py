"""Cost of each answer, budgets per client per UTC day and month, spend across restarts."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from src.tools.keys import key_sha256, new_key
from tests.support.configs import UPSTREAM, log_lines, make_config
from tests.support.gateway import GatewayProcess
from tests.support.payloads import chat_body, completion

KEY = new_key()
# completion() reports 11 prompt and 5 completion tokens: 11*2 + 5*10 = 72 USD per million.
PRICING = {"primary": {"up-model-a": {"input_usd_per_mtok": 2, "output_usd_per_mtok": 10}}}
CALL_USD = 72 / 1_000_000
AUTH = {"Authorization": f"Bearer {KEY}"}


def budget_config(tmp_path, budget=None, state=None):
    client = {"key_sha256": key_sha256(KEY)}
    if budget:
        client["budget"] = budget
    return make_config(
        tmp_path, pricing=PRICING, clients={"acme": client}, state=state or {"backend": "memory"}
    )


@pytest.fixture
def answering(upstream, provider_key):
    return upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())


async def test_cost_comes_from_real_usage_in_header_and_telemetry(
    gateway_client, answering, tmp_path, state
):
    config = budget_config(tmp_path, state=state)
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert response.status_code == 200
    assert float(response.headers["x-gateway-cost-usd"]) == pytest.approx(CALL_USD)
    seed = await client.post("/v1/chat", json=chat_body(), headers=AUTH)
    assert float(seed.headers["x-gateway-cost-usd"]) == pytest.approx(CALL_USD)
    client.app.state.telemetry.writer.close()
    assert [line["cost_usd"] for line in log_lines(config)] == pytest.approx([CALL_USD] * 2)


async def test_an_unpriced_model_has_no_cost(gateway_client, upstream, provider_key, tmp_path):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    config = make_config(tmp_path)
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200 and "x-gateway-cost-usd" not in response.headers
    client.app.state.telemetry.writer.close()
    assert log_lines(config)[0]["cost_usd"] is None


async def test_a_stream_carries_its_cost_in_the_usage_chunk_and_the_log(
    gateway_client, upstream, provider_key, tmp_path
):
    chunks = [
        {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
         "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": "stop"}]},
        {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
         "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}},
    ]  # fmt: skip
    sse = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    upstream.post(f"{UPSTREAM}/chat/completions").respond(
        text=sse, headers={"content-type": "text/event-stream"}
    )
    config = budget_config(tmp_path)
    client = await gateway_client(config)
    body = chat_body(stream=True, stream_options={"include_usage": True})
    response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    events = [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")
    ]
    assert events[-1]["usage"]["cost_usd"] == pytest.approx(CALL_USD)
    assert "x-gateway-cost-usd" not in response.headers
    client.app.state.telemetry.writer.close()
    assert log_lines(config)[0]["cost_usd"] == pytest.approx(CALL_USD)


async def test_over_budget_is_429_before_any_upstream_call(
    gateway_client, answering, tmp_path, state
):
    config = budget_config(tmp_path, {"usd_per_day": 2.5 * CALL_USD}, state)
    client = await gateway_client(config)
    statuses = [
        (await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)).status_code
        for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    assert answering.call_count == 3
    refused = await client.post("/v1/chat", json=chat_body(), headers=AUTH)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "budget_exceeded"
    assert "usd_per_day" in error["message"] and "acme" in error["message"]
    assert f"${3 * CALL_USD:.4f}" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 86_400
    assert answering.call_count == 3


async def test_monthly_budget_is_named_when_reached(gateway_client, answering, tmp_path, state):
    client = await gateway_client(
        budget_config(tmp_path, {"usd_per_day": 1, "usd_per_month": CALL_USD / 2}, state)
    )
    assert (
        await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    ).status_code == 200
    refused = await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert refused.status_code == 429
    assert "usd_per_month" in refused.json()["error"]["message"]


async def test_a_burst_cannot_overshoot_the_budget_by_more_than_it_holds(
    gateway_client, upstream, provider_key, tmp_path, state
):
    async def slow(request):
        await asyncio.sleep(0.05)
        return httpx.Response(200, json=completion())

    upstream.post(f"{UPSTREAM}/chat/completions").mock(side_effect=slow)
    # Each request holds its estimate: ~2 prompt tokens and max_tokens=5 completion tokens.
    estimate = (2 * 2 + 5 * 10) / 1_000_000
    client = await gateway_client(budget_config(tmp_path, {"usd_per_day": 2.5 * estimate}, state))
    responses = await asyncio.gather(
        *(
            client.post("/v1/chat/completions", json=chat_body(max_tokens=5), headers=AUTH)
            for _ in range(10)
        )
    )
    assert sorted(r.status_code for r in responses) == [200] * 3 + [429] * 7


@pytest.mark.slow
def test_budget_reached_mid_day_survives_a_gateway_restart(tmp_path):
    """A real gateway process: spend a budget, restart the gateway, and the client is still refused."""
    key = new_key()
    config = {
        "providers": {
            "stubbed": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "GW_TEST_NEVER_SET"}
        },
        "aliases": {"default-chat": {"provider": "stubbed", "model": "m"}},
        "rate_limit": {"requests_per_minute": 1000},
        "log_file": str(tmp_path / "logs" / "gateway.log"),
        # The stub's seed answer is 7 + 17 tokens: 0.024 USD at 1000 USD per million.
        "pricing": {"stubbed": {"m": {"input_usd_per_mtok": 1000, "output_usd_per_mtok": 1000}}},
        "clients": {"acme": {"key_sha256": key_sha256(key), "budget": {"usd_per_day": 0.05}}},
    }
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps(config))
    body = {
        "model": "default-chat",
        "messages": [{"role": "user", "content": "Explain rate limiting in simple terms."}],
    }
    headers = {"Authorization": f"Bearer {key}"}
    gateway = GatewayProcess(path, tmp_path, env={"GW_TEST_NEVER_SET": ""}).start()
    try:
        statuses = [
            httpx.post(gateway.base_url + "/v1/chat", json=body, headers=headers).status_code
            for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
    finally:
        gateway.stop()
    gateway.start()
    try:
        refused = httpx.post(gateway.base_url + "/v1/chat", json=body, headers=headers)
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "budget_exceeded"
        assert "$0.0720" in refused.json()["error"]["message"]
    finally:
        gateway.stop()
