"""Telemetry: one JSON line per request, to stdout and the log file, never a key."""

from __future__ import annotations

import asyncio

import httpx

from tests.support.configs import PROVIDER_KEY, UPSTREAM, log_lines, make_config
from tests.support.payloads import chat_body, completion

REQUIRED = {
    "timestamp", "request_id", "client_id", "endpoint", "alias", "provider", "upstream_model",
    "status", "error_type", "latency_ms", "upstream_latency_ms", "prompt_tokens",
    "completion_tokens", "total_tokens", "stub", "targets_tried",
}  # fmt: skip


async def run_requests(gateway_client, upstream, config, bodies, headers=None):
    client = await gateway_client(config)
    responses = await asyncio.gather(
        *(client.post("/v1/chat/completions", json=b, headers=headers or {}) for b in bodies)
    )
    client.app.state.telemetry.writer.close()
    return responses, log_lines(config)


async def test_one_line_per_request_with_the_documented_keys(
    gateway_client, upstream, tmp_path, provider_key
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    config = make_config(tmp_path)
    bodies = [chat_body(), {**chat_body(), "model": "missing"}, {"model": 1}]
    responses, lines = await run_requests(
        gateway_client, upstream, config, bodies, headers={"X-Client-Id": "team-t"}
    )
    assert len(lines) == 3
    for line in lines:
        assert set(line) >= REQUIRED
    by_status = {line["status"]: line for line in lines}
    ok = by_status[200]
    assert ok["client_id"] == "team-t" and ok["endpoint"] == "/v1/chat/completions"
    assert ok["alias"] == "default-chat" and ok["provider"] == "primary"
    assert ok["upstream_model"] == "up-model-a" and ok["targets_tried"] == 1
    assert (ok["prompt_tokens"], ok["completion_tokens"], ok["total_tokens"]) == (11, 5, 16)
    assert ok["stub"] is False and ok["error_type"] is None and ok["latency_ms"] > 0
    assert by_status[404]["error_type"] == "model_not_found"
    assert by_status[400]["error_type"] == "invalid_request_error"
    assert {r.headers["x-request-id"] for r in responses} == {line["request_id"] for line in lines}


async def test_concurrent_requests_neither_interleave_nor_lose_lines(
    gateway_client, upstream, tmp_path, provider_key
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    config = make_config(tmp_path)
    _, lines = await run_requests(gateway_client, upstream, config, [chat_body()] * 300)
    assert len(lines) == 300
    assert len({line["request_id"] for line in lines}) == 300


async def test_no_key_or_authorization_reaches_the_log(
    gateway_client, upstream, tmp_path, provider_key, capfd
):
    echo = {"error": {"message": f"key {PROVIDER_KEY} rejected"}}
    upstream.post(f"{UPSTREAM}/chat/completions").respond(500, json=echo)
    upstream.post("http://secondary.test/v1/chat/completions").mock(
        side_effect=httpx.ConnectError("x")
    )
    config = make_config(tmp_path)
    client_key = "ck-q8Z3v7W1x5N2m4K6"
    responses, _ = await run_requests(
        gateway_client,
        upstream,
        config,
        [chat_body()],
        headers={"Authorization": f"Bearer {client_key}"},
    )
    text = (tmp_path / "logs" / "gateway.log").read_text() + capfd.readouterr().out
    assert text
    for secret in (PROVIDER_KEY, client_key):
        for i in range(len(secret) - 8):
            assert secret[i : i + 8] not in text
            assert secret[i : i + 8] not in responses[0].text
