"""POST /v1/chat/completions, /v1/models and /healthz against a respx upstream."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support.configs import PROVIDER_KEY, UPSTREAM, make_config
from tests.support.payloads import chat_body, completion


@pytest.fixture
def config(tmp_path, provider_key):
    return make_config(tmp_path)


async def test_answer_follows_openai_schema_with_the_alias_as_model(
    gateway_client, upstream, config, validate_schema
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion("Hi!"))
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200
    answer = response.json()
    validate_schema(answer, "CreateChatCompletionResponse")
    assert answer["model"] == "default-chat"
    assert answer["choices"][0]["message"]["content"] == "Hi!"
    assert answer["usage"] == {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}


async def test_unused_fields_pass_through_and_model_is_the_upstream_model(
    gateway_client, upstream, config
):
    route = upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    client = await gateway_client(config)
    extra: dict[str, Any] = {
        "temperature": 0.3,
        "seed": 42,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "response_format": {"type": "json_object"},
        "vendor_field": {"nested": [1, 2]},
    }
    await client.post("/v1/chat/completions", json=chat_body(**extra))
    sent = json.loads(route.calls.last.request.content)
    assert sent["model"] == "up-model-a"
    for key, value in extra.items():
        assert sent[key] == value


async def test_provider_key_is_sent_and_the_clients_credentials_are_not(
    gateway_client, upstream, config
):
    route = upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    client = await gateway_client(config)
    await client.post(
        "/v1/chat/completions",
        json=chat_body(),
        headers={"Authorization": "Bearer client-secret", "x-api-key": "client-x", "cookie": "c=1"},
    )
    headers = route.calls.last.request.headers
    assert headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert "x-api-key" not in headers and "cookie" not in headers


async def test_provider_without_api_key_env_is_called_without_authorization(
    gateway_client, upstream, tmp_path, provider_key
):
    config = make_config(tmp_path, aliases={"local": {"provider": "secondary", "model": "llama"}})
    route = upstream.post("http://secondary.test/v1/chat/completions").respond(json=completion())
    client = await gateway_client(config)
    response = await client.post(
        "/v1/chat/completions",
        json={**chat_body(), "model": "local"},
        headers={"Authorization": "Bearer client-secret"},
    )
    assert response.status_code == 200
    assert "authorization" not in route.calls.last.request.headers


async def test_unset_key_variable_means_stub_mode(
    gateway_client, upstream, tmp_path, monkeypatch, validate_schema
):
    monkeypatch.setenv("TEST_PRIMARY_KEY", "")
    route = upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    client = await gateway_client(make_config(tmp_path))
    response = await client.post("/v1/chat/completions", json=chat_body("one two three"))
    assert response.status_code == 200
    answer = response.json()
    validate_schema(answer, "CreateChatCompletionResponse")
    assert answer["choices"][0]["message"]["content"].startswith("This is a stub response")
    assert answer["usage"] == {"prompt_tokens": 4, "completion_tokens": 17, "total_tokens": 21}
    assert not route.called


async def test_missing_upstream_usage_is_approximated(gateway_client, upstream, config):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion("a b c", usage=False))
    client = await gateway_client(config)
    answer = (await client.post("/v1/chat/completions", json=chat_body("x y"))).json()
    assert answer["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}


async def test_client_id_comes_from_the_header_else_anonymous(
    gateway_client, upstream, tmp_path, provider_key
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    config = make_config(tmp_path, rate_limit={"requests_per_minute": 2})
    client = await gateway_client(config)
    for _ in range(2):
        await client.post(
            "/v1/chat/completions", json=chat_body(), headers={"X-Client-Id": "team-a"}
        )
    refused = await client.post(
        "/v1/chat/completions", json=chat_body(), headers={"X-Client-Id": "team-a"}
    )
    assert refused.status_code == 429
    assert "client_id team-a" in refused.json()["error"]["message"]
    anonymous = await client.post("/v1/chat/completions", json=chat_body())
    assert anonymous.status_code == 200


async def test_models_lists_the_aliases_in_openai_shape(gateway_client, config, validate_schema):
    client = await gateway_client(config)
    response = await client.get("/v1/models")
    assert response.status_code == 200
    validate_schema(response.json(), "ListModelsResponse")
    assert [m["id"] for m in response.json()["data"]] == ["default-chat", "solo"]


async def test_healthz_answers_ok(gateway_client, config):
    client = await gateway_client(config)
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


async def test_one_pooled_transport_per_provider_is_closed_at_shutdown(upstream, config):
    from src.edge.app import create_app

    class Tracked(httpx.MockTransport):
        closed = False

        async def aclose(self) -> None:
            self.closed = True

    made: list[Tracked] = []

    def factory(spec):
        made.append(Tracked(upstream.async_handler))
        return made[-1]

    app = create_app(config, transport=factory)
    async with app.lifespan():
        assert len(made) == 2 and not any(t.closed for t in made)
    assert all(t.closed for t in made)


async def test_start_up_objects_are_kept_out_of_the_cyclic_collector(upstream, config):
    import gc

    from src.edge.app import create_app

    gc.unfreeze()
    app = create_app(config, transport=lambda spec: httpx.MockTransport(upstream.async_handler))
    async with app.lifespan():
        assert gc.get_freeze_count() > 0
    gc.unfreeze()
