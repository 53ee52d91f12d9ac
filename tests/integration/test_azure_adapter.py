"""The Azure OpenAI adapter: deployment in the path, api-version query, api-key header."""

from __future__ import annotations

import json

import pytest

from src.config import ConfigError, parse_config
from tests.support.configs import make_config
from tests.support.payloads import completion

AZURE = "http://myres.azure.test"
AZURE_KEY = "az-8d1f0c4b7e2a9f63"


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_AZURE_KEY", AZURE_KEY)
    return make_config(
        tmp_path,
        providers={
            "azure": {
                "type": "azure",
                "base_url": AZURE,
                "api_key_env": "TEST_AZURE_KEY",
                "api_version": "2024-10-21",
                "timeout_s": 2,
            }
        },
        aliases={
            "gpt": {"provider": "azure", "model": "gpt-4o-prod"},
            "embed": {"provider": "azure", "model": "embed-small"},
        },
    )


async def test_chat_goes_to_the_deployment_with_api_version_and_api_key(
    gateway_client, upstream, config
):
    route = upstream.post(
        f"{AZURE}/openai/deployments/gpt-4o-prod/chat/completions",
        params={"api-version": "2024-10-21"},
    ).respond(json=completion("from azure"))
    client = await gateway_client(config)
    response = await client.post(
        "/v1/chat/completions",
        json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "from azure"
    sent = route.calls.last.request
    assert sent.headers["api-key"] == AZURE_KEY
    assert "authorization" not in sent.headers
    assert json.loads(sent.content)["messages"] == [{"role": "user", "content": "hi"}]


async def test_streams_go_to_the_deployment_too(gateway_client, upstream, config):
    route = upstream.post(f"{AZURE}/openai/deployments/gpt-4o-prod/chat/completions").respond(
        content=b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"az"},"finish_reason":null}]}\n\ndata: [DONE]\n\n'
    )
    client = await gateway_client(config)
    response = await client.post(
        "/v1/chat/completions",
        json={"model": "gpt", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert (
        '"az"' in response.text
        and route.calls.last.request.url.params["api-version"] == "2024-10-21"
    )


async def test_embeddings_go_to_the_deployments_embeddings_path(gateway_client, upstream, config):
    route = upstream.post(f"{AZURE}/openai/deployments/embed-small/embeddings").respond(
        json={
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}],
            "model": "x",
            "usage": {"prompt_tokens": 3, "total_tokens": 3},
        }
    )
    client = await gateway_client(config)
    response = await client.post("/v1/embeddings", json={"model": "embed", "input": "hello"})
    assert response.status_code == 200 and response.json()["data"][0]["embedding"] == [0.5]
    assert route.calls.last.request.url.params["api-version"] == "2024-10-21"


def test_azure_without_api_version_is_refused_at_start_up(tmp_path):
    data = {
        "providers": {"azure": {"type": "azure", "base_url": AZURE}},
        "aliases": {"gpt": {"provider": "azure", "model": "d"}},
        "rate_limit": {"requests_per_minute": 10},
    }
    with pytest.raises(
        ConfigError, match=r"providers\.azure: api_version: required for type 'azure'"
    ):
        parse_config(data)
