"""Client API keys, per-client limits, allow-lists and token caps."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from typing import Any

import pytest

from src.tools.keys import key_sha256, new_key
from tests.support import ROOT
from tests.support.configs import UPSTREAM, log_lines, make_config
from tests.support.payloads import chat_body, completion

KEY_A, KEY_B = new_key(), new_key()


def keyed_config(tmp_path, **clients_overrides):
    clients: dict[str, dict[str, Any]] = {
        "team-a": {"key_sha256": key_sha256(KEY_A)},
        "team-b": {"key_sha256": key_sha256(KEY_B), "allowed_models": ["solo"]},
    }
    for client_id, extra in clients_overrides.items():
        clients.setdefault(client_id, {}).update(extra)
    return make_config(tmp_path, clients=clients)


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def answering(upstream, provider_key):
    return upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())


@pytest.mark.slow
def test_keys_command_prints_a_new_key_once_and_its_hash():
    out = subprocess.run(
        [sys.executable, "-m", "src", "keys", "new", "acme"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    key_line = re.search(r"^key:\s+(\S+)$", out, re.M)
    digest_line = re.search(r"^key_sha256:\s+([0-9a-f]{64})$", out, re.M)
    assert key_line and digest_line, out
    key, digest = key_line.group(1), digest_line.group(1)
    assert hashlib.sha256(key.encode()).hexdigest() == digest
    assert len(key) >= 40
    assert f'"acme":{{"key_sha256":"{digest}"}}' in out
    again = subprocess.run(
        [sys.executable, "-m", "src", "keys", "new", "acme"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    assert key not in again


@pytest.mark.parametrize("endpoint", ["/v1/chat/completions", "/v1/chat"])
@pytest.mark.parametrize(
    "headers",
    [{}, bearer("gwk-not-a-key-of-anyone"), {"Authorization": KEY_A}, {"Authorization": "Basic x"}],
    ids=["missing", "wrong", "no-scheme", "basic"],
)
async def test_missing_or_wrong_key_is_401(gateway_client, answering, tmp_path, endpoint, headers):
    client = await gateway_client(keyed_config(tmp_path))
    response = await client.post(endpoint, json=chat_body(), headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.headers["www-authenticate"] == "Bearer"
    assert not answering.called


async def test_a_valid_key_names_the_client(gateway_client, answering, tmp_path):
    config = keyed_config(tmp_path)
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=chat_body(), headers=bearer(KEY_A))
    assert response.status_code == 200
    seed = await client.post(
        "/v1/chat", json={**chat_body(), "client_id": "team-a"}, headers=bearer(KEY_A)
    )
    assert seed.status_code == 200
    without_id = await client.post("/v1/chat", json=chat_body(), headers=bearer(KEY_A))
    assert without_id.status_code == 200
    client.app.state.telemetry.writer.close()
    assert [line["client_id"] for line in log_lines(config)] == ["team-a"] * 3


async def test_a_key_for_another_client_is_403(gateway_client, answering, tmp_path):
    client = await gateway_client(keyed_config(tmp_path))
    seed = await client.post(
        "/v1/chat", json={**chat_body(), "client_id": "team-a"}, headers=bearer(KEY_B)
    )
    assert seed.status_code == 403
    assert seed.json()["error"]["type"] == "permission_denied"
    assert "team-a" in seed.json()["error"]["message"]
    header = await client.post(
        "/v1/chat/completions", json=chat_body(), headers={**bearer(KEY_B), "X-Client-Id": "team-a"}
    )
    assert header.status_code == 403
    assert not answering.called


async def test_keys_never_reach_the_log_or_an_answer(gateway_client, answering, tmp_path, capfd):
    config = keyed_config(tmp_path)
    client = await gateway_client(config)
    responses = [
        await client.post("/v1/chat/completions", json=chat_body(), headers=bearer(KEY_A)),
        await client.post("/v1/chat/completions", json=chat_body(), headers=bearer(KEY_A + "x")),
        await client.post(
            "/v1/chat", json={**chat_body(), "client_id": "team-b"}, headers=bearer(KEY_A)
        ),
    ]
    client.app.state.telemetry.writer.close()
    seen = (tmp_path / "logs" / "gateway.log").read_text() + capfd.readouterr().out
    seen += "".join(r.text + str(r.headers) for r in responses)
    assert KEY_A[4:20] not in seen


async def test_a_model_outside_the_allow_list_is_403(gateway_client, answering, tmp_path):
    client = await gateway_client(keyed_config(tmp_path))
    response = await client.post("/v1/chat/completions", json=chat_body(), headers=bearer(KEY_B))
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["type"] == "model_not_allowed" and error["param"] == "model"
    assert "default-chat" in error["message"]
    assert not answering.called
    allowed = await client.post(
        "/v1/chat/completions", json={**chat_body(), "model": "solo"}, headers=bearer(KEY_B)
    )
    assert allowed.status_code == 200


async def test_models_lists_only_what_the_caller_may_use(gateway_client, tmp_path):
    client = await gateway_client(keyed_config(tmp_path))
    assert (await client.get("/v1/models")).status_code == 401
    every = (await client.get("/v1/models", headers=bearer(KEY_A))).json()
    assert [m["id"] for m in every["data"]] == ["default-chat", "solo"]
    some = (await client.get("/v1/models", headers=bearer(KEY_B))).json()
    assert [m["id"] for m in some["data"]] == ["solo"]


async def test_per_client_rate_limit_goes_through_the_limiter(gateway_client, answering, tmp_path):
    config = keyed_config(tmp_path, **{"team-a": {"rate_limit": {"requests_per_minute": 2}}})
    client = await gateway_client(config)
    statuses = [
        (
            await client.post("/v1/chat/completions", json=chat_body(), headers=bearer(KEY_A))
        ).status_code
        for _ in range(3)
    ]
    assert statuses == [200, 200, 429]
    refused = await client.post("/v1/chat/completions", json=chat_body(), headers=bearer(KEY_A))
    assert (
        refused.json()["error"]["message"]
        == "Request rate exceeded for client_id team-a (2 req/min)."
    )
    assert refused.headers["x-ratelimit-limit-requests"] == "2"
    other = await client.post(
        "/v1/chat/completions", json={**chat_body(), "model": "solo"}, headers=bearer(KEY_B)
    )
    assert other.status_code == 200
    assert other.headers["x-ratelimit-limit-requests"] == "1000"


async def test_client_max_tokens_caps_and_fills_the_request(
    gateway_client, upstream, answering, tmp_path
):
    client = await gateway_client(keyed_config(tmp_path, **{"team-a": {"max_tokens": 50}}))
    over = await client.post(
        "/v1/chat/completions", json=chat_body(max_tokens=51), headers=bearer(KEY_A)
    )
    assert over.status_code == 400
    assert over.json()["error"]["param"] == "max_tokens"
    assert not answering.called
    ok = await client.post("/v1/chat/completions", json=chat_body(), headers=bearer(KEY_A))
    assert ok.status_code == 200
    assert json.loads(answering.calls.last.request.content)["max_tokens"] == 50


async def test_open_mode_warns_once_at_start_up(gateway_client, tmp_path, capfd):
    await gateway_client(make_config(tmp_path))
    warnings = [line for line in capfd.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "running open" in warnings[0]
    await gateway_client(keyed_config(tmp_path))
    assert "running open" not in capfd.readouterr().err


async def test_the_openai_sdk_passes_its_api_key_as_the_client_key(
    gateway_client, answering, tmp_path
):
    import openai

    gateway = await gateway_client(keyed_config(tmp_path))

    def sdk(key):
        return openai.AsyncOpenAI(
            api_key=key, base_url="http://gateway.test/v1", http_client=gateway, max_retries=0
        )

    reply = await sdk(KEY_B).chat.completions.create(
        model="solo", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content == "Hello there."
    assert [m.id async for m in sdk(KEY_B).models.list()] == ["solo"]
    with pytest.raises(openai.PermissionDeniedError) as denied:
        await sdk(KEY_B).chat.completions.create(
            model="default-chat", messages=[{"role": "user", "content": "hi"}]
        )
    assert isinstance(denied.value.body, dict)
    assert denied.value.body["type"] == "model_not_allowed"
    with pytest.raises(openai.AuthenticationError):
        await sdk("gwk-wrong").chat.completions.create(
            model="solo", messages=[{"role": "user", "content": "hi"}]
        )


async def test_the_messages_route_takes_the_anthropic_sdks_x_api_key(
    gateway_client, answering, tmp_path
):
    client = await gateway_client(keyed_config(tmp_path, **{"team-a": {"max_tokens": 10}}))
    body = {"model": "solo", "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]}
    ok = await client.post("/v1/messages", json=body, headers={"x-api-key": KEY_B})
    assert ok.status_code == 200 and ok.json()["type"] == "message"
    denied = await client.post(
        "/v1/messages", json={**body, "model": "default-chat"}, headers={"x-api-key": KEY_B}
    )
    assert denied.status_code == 403
    assert denied.json()["type"] == "error"
    missing = await client.post("/v1/messages", json=body)
    assert missing.status_code == 401
    capped = await client.post("/v1/messages", json=body, headers={"x-api-key": KEY_A})
    assert capped.status_code == 400
    assert capped.json()["error"]["type"] == "invalid_request_error"
    assert "at most 10" in capped.json()["error"]["message"]


async def test_embeddings_need_a_key_and_respect_the_allow_list(
    gateway_client, upstream, provider_key, tmp_path
):
    route = upstream.post(f"{UPSTREAM}/embeddings").respond(
        json={"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}],
              "usage": {"prompt_tokens": 3, "total_tokens": 3}}
    )  # fmt: skip
    config = keyed_config(tmp_path, **{"team-a": {"max_tokens": 5}})
    client = await gateway_client(config)
    body = {"model": "solo", "input": "hello there"}
    assert (await client.post("/v1/embeddings", json=body)).status_code == 401
    ok = await client.post("/v1/embeddings", json=body, headers=bearer(KEY_A))
    assert ok.status_code == 200
    assert "max_tokens" not in json.loads(route.calls.last.request.content)
    denied = await client.post(
        "/v1/embeddings", json={**body, "model": "default-chat"}, headers=bearer(KEY_B)
    )
    assert denied.json()["error"]["type"] == "model_not_allowed"
