"""POST /v1/embeddings in-process: aliases, fallbacks, limits, telemetry, and what cannot embed."""

from __future__ import annotations

import json
from typing import Any

from tests.support.anthropic_events import ANTHROPIC
from tests.support.configs import UPSTREAM, log_lines, make_config

PRIMARY = f"{UPSTREAM}/embeddings"
SECONDARY = "http://secondary.test/v1/embeddings"


def vectors(*values, usage=True):
    answer: dict[str, Any] = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": [v]} for i, v in enumerate(values)
        ],
        "model": "text-embedding-3-small",
    }
    if usage:
        answer["usage"] = {"prompt_tokens": 8, "total_tokens": 8}
    return answer


def config_for(tmp_path, **extra):
    return make_config(
        tmp_path,
        aliases={
            "embed": {
                "provider": "primary",
                "model": "text-embedding-3-small",
                "fallbacks": [{"provider": "secondary", "model": "bge-small"}],
            }
        },
        **extra,
    )


async def test_embeddings_pass_through_with_the_alias_as_model(
    gateway_client, upstream, tmp_path, provider_key
):
    route = upstream.post(PRIMARY).respond(json=vectors(0.1, 0.2))
    config = config_for(tmp_path)
    client = await gateway_client(config)
    response = await client.post(
        "/v1/embeddings",
        json={
            "model": "embed",
            "input": ["a b", "c"],
            "dimensions": 256,
            "encoding_format": "float",
        },
        headers={"X-Client-Id": "indexer"},
    )
    assert response.status_code == 200
    answer = response.json()
    assert answer["model"] == "embed" and [d["embedding"] for d in answer["data"]] == [[0.1], [0.2]]
    assert answer["usage"] == {"prompt_tokens": 8, "total_tokens": 8}
    sent = json.loads(route.calls.last.request.content)
    assert sent == {
        "model": "text-embedding-3-small",
        "input": ["a b", "c"],
        "dimensions": 256,
        "encoding_format": "float",
    }
    assert response.headers["x-request-id"].startswith("gw-")
    client.app.state.telemetry.writer.close()
    [line] = log_lines(config)
    assert line["endpoint"] == "/v1/embeddings" and line["client_id"] == "indexer"
    assert line["prompt_tokens"] == 8 and line["completion_tokens"] == 0


async def test_embeddings_fall_back_and_approximate_missing_usage(
    gateway_client, upstream, tmp_path, provider_key
):
    upstream.post(PRIMARY).respond(503)
    upstream.post(SECONDARY).respond(json=vectors(0.3, usage=False))
    client = await gateway_client(config_for(tmp_path))
    response = await client.post(
        "/v1/embeddings", json={"model": "embed", "input": "three little words"}
    )
    assert response.status_code == 200
    assert response.json()["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


async def test_embeddings_count_against_the_token_limit(
    gateway_client, upstream, tmp_path, provider_key
):
    upstream.post(PRIMARY).respond(json=vectors(0.1, usage=False))
    config = config_for(tmp_path, rate_limit={"requests_per_minute": 100, "tokens_per_minute": 10})
    client = await gateway_client(config)
    first = await client.post(
        "/v1/embeddings", json={"model": "embed", "input": "one two three four five six"}
    )
    assert first.status_code == 200 and first.headers["x-ratelimit-remaining-tokens"] == "4"
    second = await client.post("/v1/embeddings", json={"model": "embed", "input": "a b c d e f g"})
    assert second.status_code == 429 and second.json()["error"]["type"] == "rate_limit_exceeded"


async def test_bad_input_is_a_400_naming_the_field(gateway_client, tmp_path, provider_key):
    client = await gateway_client(config_for(tmp_path))
    response = await client.post("/v1/embeddings", json={"model": "embed", "input": 5})
    assert response.status_code == 400 and response.json()["error"]["param"].startswith("input")


async def test_an_anthropic_target_cannot_embed(gateway_client, upstream, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "k")
    config = make_config(
        tmp_path,
        providers={
            "claude": {
                "type": "anthropic",
                "base_url": ANTHROPIC,
                "api_key_env": "TEST_ANTHROPIC_KEY",
            }
        },
        aliases={"embed": {"provider": "claude", "model": "claude-up"}},
    )
    client = await gateway_client(config)
    response = await client.post("/v1/embeddings", json={"model": "embed", "input": "x"})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "model: provider 'claude' (anthropic) cannot take it; Anthropic offers no embeddings API."
    )


async def test_stub_mode_embeds_deterministically(gateway_client, tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_PRIMARY_KEY", raising=False)
    client = await gateway_client(config_for(tmp_path))
    body = {"model": "embed", "input": ["same", "other"], "dimensions": 4}
    first = (await client.post("/v1/embeddings", json=body)).json()
    second = (await client.post("/v1/embeddings", json=body)).json()
    assert first["data"] == second["data"] and len(first["data"][0]["embedding"]) == 4
    assert first["data"][0]["embedding"] != first["data"][1]["embedding"]
