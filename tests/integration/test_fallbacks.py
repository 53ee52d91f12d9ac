"""Routing: the alias's targets are tried in order; which failures move on, and what the client gets."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.support.configs import PROVIDER_KEY, UPSTREAM, log_lines, make_config
from tests.support.payloads import chat_body, completion

PRIMARY = f"{UPSTREAM}/chat/completions"
SECONDARY = "http://secondary.test/v1/chat/completions"


@pytest.fixture
def config(tmp_path, provider_key):
    return make_config(tmp_path)


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500, json={"error": {"message": "boom"}}),
        httpx.Response(503),
        httpx.Response(429, json={"error": {"message": "slow down"}}),
        httpx.Response(200, text="<html>oops</html>"),
        httpx.Response(200, json={}),
        httpx.Response(200, json={"choices": [1, 2]}),
        httpx.Response(401, json={"error": {"message": "bad key"}}),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
    ],
    ids=[
        "500",
        "503",
        "429",
        "html-200",
        "empty-200",
        "bad-choices-200",
        "401",
        "connect-error",
        "timeout",
    ],
)
async def test_failure_moves_on_to_the_fallback_in_order(gateway_client, upstream, config, failure):
    first = upstream.post(PRIMARY)
    if isinstance(failure, Exception):
        first.side_effect = failure
    else:
        first.return_value = failure
    second = upstream.post(SECONDARY).respond(json=completion("from fallback", model="up-model-b"))
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "from fallback"
    assert first.call_count == 1 and second.call_count == 1
    assert json.loads(second.calls.last.request.content)["model"] == "up-model-b"


async def test_telemetry_names_the_target_that_answered_and_how_many_were_tried(
    gateway_client, upstream, config
):
    upstream.post(PRIMARY).respond(500)
    upstream.post(SECONDARY).respond(json=completion(model="up-model-b"))
    client = await gateway_client(config)
    await client.post("/v1/chat/completions", json=chat_body())
    client.app.state.telemetry.writer.close()
    [line] = log_lines(config)
    assert line["provider"] == "secondary" and line["upstream_model"] == "up-model-b"
    assert line["targets_tried"] == 2


async def test_all_targets_failing_is_502_upstream_error(gateway_client, upstream, config):
    upstream.post(PRIMARY).respond(500)
    upstream.post(SECONDARY).mock(side_effect=httpx.ConnectError("refused"))
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "upstream_error"
    assert "All 2 targets" in error["message"] and "secondary" in error["message"]


async def test_last_failure_a_timeout_is_504(gateway_client, upstream, config):
    upstream.post(PRIMARY).respond(500)
    upstream.post(SECONDARY).mock(side_effect=httpx.ReadTimeout("slow"))
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "upstream_timeout"


async def test_slow_upstream_is_cut_at_the_provider_timeout(
    gateway_client, upstream, tmp_path, provider_key
):
    import asyncio

    async def hang(request):
        await asyncio.sleep(10)
        return httpx.Response(200, json=completion())

    config = make_config(
        tmp_path,
        providers={
            "primary": {"base_url": UPSTREAM, "api_key_env": "TEST_PRIMARY_KEY", "timeout_s": 0.3}
        },
        aliases={"solo": {"provider": "primary", "model": "m"}},
    )
    upstream.post(PRIMARY).mock(side_effect=hang)
    client = await gateway_client(config)
    started = time.monotonic()
    response = await client.post("/v1/chat/completions", json={**chat_body(), "model": "solo"})
    assert response.status_code == 504
    assert time.monotonic() - started < 3


async def test_last_failure_an_upstream_429_is_answered_429(gateway_client, upstream, config):
    upstream.post(PRIMARY).respond(500)
    upstream.post(SECONDARY).respond(429, headers={"retry-after": "7"})
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "upstream_rate_limited"
    assert response.headers["retry-after"] == "7"


@pytest.mark.parametrize("status", [400, 413, 422])
async def test_request_faults_are_returned_without_trying_the_fallback(
    gateway_client, upstream, config, status
):
    upstream.post(PRIMARY).respond(status, json={"error": {"message": "max_tokens is too large"}})
    second = upstream.post(SECONDARY).respond(json=completion())
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "max_tokens is too large" in error["message"]
    assert not second.called


async def test_upstream_error_text_that_echoes_the_key_is_withheld(
    gateway_client, upstream, config
):
    echo = {"error": {"message": f"Incorrect API key provided: {PROVIDER_KEY[:12]}****"}}
    upstream.post(PRIMARY).respond(400, json=echo)
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 400
    assert PROVIDER_KEY[:8] not in response.text
    assert "withheld" in response.json()["error"]["message"]


async def test_retry_after_is_honoured_before_the_next_target_on_the_same_provider(
    gateway_client, upstream, tmp_path, provider_key
):
    config = make_config(
        tmp_path,
        aliases={
            "same": {
                "provider": "primary",
                "model": "m1",
                "fallbacks": [{"provider": "primary", "model": "m2"}],
            }
        },
    )
    calls: list[float] = []

    def answer(request):
        calls.append(time.monotonic())
        if json.loads(request.content)["model"] == "m1":
            return httpx.Response(429, headers={"retry-after": "0.5"})
        return httpx.Response(200, json=completion())

    upstream.post(PRIMARY).mock(side_effect=answer)
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json={**chat_body(), "model": "same"})
    assert response.status_code == 200
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.45


async def test_redirects_are_not_followed(gateway_client, upstream, config):
    upstream.post(PRIMARY).respond(307, headers={"location": "http://169.254.169.254/latest"})
    second = upstream.post(SECONDARY).respond(json=completion())
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200
    assert second.called
    assert all("169.254" not in str(call.request.url) for call in upstream.calls)


@pytest.mark.parametrize(
    ("failure", "words"),
    [
        (httpx.ConnectError("refused"), "could not be reached"),
        (httpx.ReadError("reset"), "broke the connection while answering"),
    ],
)
async def test_the_message_tells_a_refused_connection_from_a_broken_one(
    gateway_client, upstream, tmp_path, provider_key, failure, words
):
    upstream.post(PRIMARY).mock(side_effect=failure)
    client = await gateway_client(
        make_config(tmp_path, aliases={"solo": {"provider": "primary", "model": "m"}})
    )
    response = await client.post("/v1/chat/completions", json={**chat_body(), "model": "solo"})
    assert response.status_code == 502
    assert words in response.json()["error"]["message"]
