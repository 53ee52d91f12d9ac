"""Circuit breaker: opens after repeated failures, skips the target, probes once after the cool-down."""

from __future__ import annotations

import asyncio

import httpx

from tests.support.configs import UPSTREAM, log_lines, make_config
from tests.support.payloads import chat_body, completion

PRIMARY = f"{UPSTREAM}/chat/completions"


def breaker_config(tmp_path, cooldown_s=60.0):
    return make_config(
        tmp_path,
        aliases={"solo": {"provider": "primary", "model": "m"}},
        breaker={"failure_threshold": 3, "cooldown_s": cooldown_s},
    )


def ask(client):
    return client.post("/v1/chat/completions", json=chat_body(model="solo"))


async def health(client):
    response = await client.get("/healthz", params={"verbose": "1"})
    assert response.status_code == 200
    return response.json()


async def open_breaker(client, route):
    for _ in range(3):
        assert (await ask(client)).status_code == 502
    assert route.call_count == 3


async def test_breaker_opens_after_the_threshold_and_skips_the_target(
    gateway_client, upstream, tmp_path, provider_key
):
    route = upstream.post(PRIMARY).respond(500)
    config = breaker_config(tmp_path)
    client = await gateway_client(config)
    assert (await health(client))["targets"][0]["state"] == "closed"
    await open_breaker(client, route)
    response = await ask(client)
    assert route.call_count == 3  # not called again
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "upstream_unavailable"
    assert 1 <= int(response.headers["retry-after"]) <= 60
    report = await health(client)
    assert report["status"] == "degraded"
    assert report["targets"] == [
        {
            "provider": "primary",
            "model": "m",
            "state": "open",
            "consecutive_failures": 3,
            "retry_in_s": report["targets"][0]["retry_in_s"],
        }
    ]
    assert 59 < report["targets"][0]["retry_in_s"] <= 60
    client.app.state.telemetry.writer.close()
    lines = log_lines(config)
    assert [line["breaker"] for line in lines] == ["closed", "closed", "open", None]
    assert lines[-1]["skipped_targets"] == 1 and lines[-1]["targets_tried"] == 0


async def test_plain_healthz_stays_minimal(gateway_client, tmp_path, provider_key):
    client = await gateway_client(breaker_config(tmp_path))
    response = await client.get("/healthz")
    assert response.json() == {"status": "ok"}


async def test_after_the_cooldown_one_successful_probe_closes_it(
    gateway_client, upstream, tmp_path, provider_key
):
    route = upstream.post(PRIMARY).respond(500)
    client = await gateway_client(breaker_config(tmp_path, cooldown_s=0.3))
    await open_breaker(client, route)
    assert (await ask(client)).status_code == 503
    await asyncio.sleep(0.35)
    route.return_value = httpx.Response(200, json=completion("back"))
    response = await ask(client)
    assert response.status_code == 200 and route.call_count == 4
    report = await health(client)
    assert report["status"] == "ok"
    assert (
        report["targets"][0]["state"] == "closed"
        and report["targets"][0]["consecutive_failures"] == 0
    )


async def test_a_failed_probe_opens_it_again(gateway_client, upstream, tmp_path, provider_key):
    route = upstream.post(PRIMARY).respond(500)
    client = await gateway_client(breaker_config(tmp_path, cooldown_s=0.3))
    await open_breaker(client, route)
    await asyncio.sleep(0.35)
    assert (await ask(client)).status_code == 502  # the probe
    assert route.call_count == 4
    assert (await ask(client)).status_code == 503  # open again, at once
    assert route.call_count == 4
    assert (await health(client))["targets"][0]["state"] == "open"


async def test_half_open_lets_exactly_one_probe_through(
    gateway_client, upstream, tmp_path, provider_key
):
    route = upstream.post(PRIMARY).respond(500)
    client = await gateway_client(breaker_config(tmp_path, cooldown_s=0.2))
    await open_breaker(client, route)
    await asyncio.sleep(0.25)

    async def slow_ok(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.2)
        return httpx.Response(200, json=completion("probe"))

    route.side_effect = slow_ok
    statuses = sorted(r.status_code for r in await asyncio.gather(*(ask(client) for _ in range(3))))
    assert statuses == [200, 503, 503]
    assert route.call_count == 4


async def test_a_success_resets_the_count_and_a_400_is_not_a_failure(
    gateway_client, upstream, tmp_path, provider_key
):
    answers = [500, 500, 200, 500, 400, 500, 200]
    responses = iter(
        httpx.Response(200, json=completion()) if status == 200 else httpx.Response(status)
        for status in answers
    )
    route = upstream.post(PRIMARY).mock(side_effect=lambda request: next(responses))
    client = await gateway_client(breaker_config(tmp_path))
    statuses = [(await ask(client)).status_code for _ in answers]
    assert statuses == [502, 502, 200, 502, 400, 502, 200]
    assert route.call_count == len(answers)
    assert (await health(client))["targets"][0]["state"] == "closed"
