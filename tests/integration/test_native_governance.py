"""Governance in every dialect: policies read the Responses API's and Anthropic's prompt text, the
client's token cap applies to ``max_output_tokens``, and a changed body is re-serialised."""

from __future__ import annotations

import json

from src.tools.keys import key_sha256, new_key
from tests.support.anthropic_events import ANTHROPIC, ANTHROPIC_KEY, message
from tests.support.configs import UPSTREAM, make_config

RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1,
    "status": "completed",
    "model": "up-model-a",
    "output": [],
    "usage": {"input_tokens": 3, "output_tokens": 0, "total_tokens": 3},
}


async def test_block_pattern_sees_responses_input_and_instructions(
    gateway_client, upstream, tmp_path, provider_key
):
    route = upstream.post(f"{UPSTREAM}/responses").respond(json=RESPONSE)
    policy = {"name": "no-secrets", "action": "block_pattern", "patterns": ["hunter2"]}
    client = await gateway_client(make_config(tmp_path, policies=[policy]))
    for body in (
        {"model": "solo", "input": "my password is hunter2"},
        {"model": "solo", "input": "hi", "instructions": "say hunter2"},
        {
            "model": "solo",
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "hunter2"}]}],
        },
    ):
        refused = await client.post("/v1/responses", json=body)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "content_blocked"
    assert route.call_count == 0
    assert (await client.post("/v1/responses", json={"model": "solo", "input": "hi"})).is_success


async def test_redact_changes_an_anthropic_system_prompt_before_it_leaves(
    gateway_client, upstream, tmp_path, monkeypatch
):
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", ANTHROPIC_KEY)
    route = upstream.post(f"{ANTHROPIC}/messages").respond(json=message())
    config = make_config(
        tmp_path,
        providers={
            "claude": {
                "type": "anthropic",
                "base_url": ANTHROPIC,
                "api_key_env": "TEST_ANTHROPIC_KEY",
            }
        },
        aliases={"claude": {"provider": "claude", "model": "claude-up"}},
        policies=[{"name": "mail", "action": "redact", "presets": ["email"]}],
    )
    client = await gateway_client(config)
    body = {
        "model": "claude",
        "max_tokens": 10,
        "system": [
            {
                "type": "text",
                "text": "Owner: bob@example.com",
                "cache_control": {"type": "ephemeral"},
            }
        ],
        "messages": [{"role": "user", "content": "mail alice@example.com"}],
    }
    response = await client.post("/v1/messages", json=body)
    assert response.status_code == 200
    sent = json.loads(route.calls.last.request.content)
    assert sent["system"] == [
        {"type": "text", "text": "Owner: [REDACTED]", "cache_control": {"type": "ephemeral"}}
    ]
    assert sent["messages"][0]["content"] == "mail [REDACTED]"


async def test_the_client_cap_becomes_max_output_tokens(
    gateway_client, upstream, tmp_path, provider_key
):
    key = new_key()
    route = upstream.post(f"{UPSTREAM}/responses").respond(json=RESPONSE)
    clients = {"capped": {"key_sha256": key_sha256(key), "max_tokens": 100}}
    client = await gateway_client(make_config(tmp_path, clients=clients))
    headers = {"Authorization": f"Bearer {key}"}
    ok = await client.post("/v1/responses", json={"model": "solo", "input": "hi"}, headers=headers)
    assert ok.status_code == 200
    assert json.loads(route.calls.last.request.content)["max_output_tokens"] == 100
    over = await client.post(
        "/v1/responses",
        json={"model": "solo", "input": "hi", "max_output_tokens": 500},
        headers=headers,
    )
    assert over.status_code == 400 and over.json()["error"]["param"] == "max_output_tokens"
