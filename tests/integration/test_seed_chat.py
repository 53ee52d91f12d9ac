"""POST /v1/chat: the seed README's request, answer and 21st-request error, exactly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from src.config import load_config
from src.providers import STUB_TEXT

SEED_REQUEST = {
    "client_id": "dev-local-1",
    "model": "default-chat",
    "messages": [{"role": "user", "content": "Explain rate limiting in simple terms."}],
}


@pytest.fixture
def example_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = load_config("config/example.config.json")
    return config.model_copy(update={"log_file": str(tmp_path / "gateway.log")})


async def test_seed_example_answers_exactly_as_the_readme_prints(gateway_client, example_config):
    client = await gateway_client(example_config)
    response = await client.post("/v1/chat", json=SEED_REQUEST)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["id", "model", "provider", "usage", "message"]
    assert re.fullmatch(r"gw-[0-9a-f]{12}", body["id"])
    assert body["model"] == "default-chat"
    assert body["provider"] == "openai"
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 17, "total_tokens": 24}
    assert body["message"] == {
        "role": "assistant",
        "content": "This is a stub response from the gateway. Configure a valid API key to get real completions.",
    }
    assert body["message"]["content"] == STUB_TEXT


async def test_twenty_first_request_in_a_minute_gets_the_seed_error(gateway_client, example_config):
    client = await gateway_client(example_config)
    body = {
        "client_id": "test",
        "model": "default-chat",
        "messages": [{"role": "user", "content": "hi"}],
    }
    for _ in range(20):
        assert (await client.post("/v1/chat", json=body)).status_code == 200
    response = await client.post("/v1/chat", json=body)
    assert response.status_code == 429
    assert response.json() == {
        "error": {
            "type": "rate_limit_exceeded",
            "message": "Request rate exceeded for client_id test (20 req/min).",
        }
    }
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.headers["x-ratelimit-limit-requests"] == "20"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"


async def test_limits_are_per_client(gateway_client, example_config):
    client = await gateway_client(example_config)
    for _ in range(20):
        await client.post("/v1/chat", json={**SEED_REQUEST, "client_id": "a"})
    response = await client.post("/v1/chat", json={**SEED_REQUEST, "client_id": "b"})
    assert response.status_code == 200
    assert response.headers["x-ratelimit-remaining-requests"] == "19"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "default-chat", "messages": [{"role": "user", "content": "x"}]}, "client_id"),
        ({"client_id": "c", "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"client_id": "c", "model": "default-chat"}, "messages"),
        (
            {
                "client_id": 5,
                "model": "default-chat",
                "messages": [{"role": "user", "content": "x"}],
            },
            "client_id",
        ),
        ({"client_id": "c", "model": ["default-chat"], "messages": [{"role": "user"}]}, "model"),
        ({"client_id": "c", "model": "default-chat", "messages": "hello"}, "messages"),
    ],
)
async def test_missing_or_ill_typed_fields_are_400_in_the_seed_envelope(
    gateway_client, example_config, body, field
):
    client = await gateway_client(example_config)
    response = await client.post("/v1/chat", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert list(error) == ["type", "message"]
    assert error["type"] == "invalid_request_error"
    assert field in error["message"]


async def test_seed_errors_have_only_type_and_message(gateway_client, example_config):
    client = await gateway_client(example_config)
    response = await client.post("/v1/chat", json={**SEED_REQUEST, "model": "nope"})
    assert response.status_code == 404
    assert list(response.json()["error"]) == ["type", "message"]
    assert response.json()["error"]["type"] == "model_not_found"
