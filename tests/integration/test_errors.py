"""Every non-2xx answer is the error envelope; bad input is 4xx, never 500 or FastAPI's 422."""

from __future__ import annotations

import pytest

from tests.support.configs import UPSTREAM, make_config
from tests.support.payloads import chat_body, completion

ENDPOINT = "/v1/chat/completions"


@pytest.fixture
async def client(gateway_client, upstream, tmp_path, provider_key):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    return await gateway_client(make_config(tmp_path, max_prompt_tokens=10, max_body_bytes=300_000))


def assert_openai_error(response, status: int, error_type: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"type", "message", "param", "code"}
    assert error["type"] == error_type
    assert isinstance(error["message"], str) and error["message"]
    return error


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"\xff\xfe{}",
        b'{"model": "default-chat", "messages": [{"role": "user", "content": "\\ud800"}]}',
        b"[1, 2, 3]",
        b'"a string"',
        b"",
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["malformed", "invalid-utf8", "lone-surrogate", "array", "string", "empty", "deep-nesting"],
)
async def test_unparseable_or_non_object_bodies_are_400(client, raw):
    response = await client.post(
        ENDPOINT, content=raw, headers={"content-type": "application/json"}
    )
    assert_openai_error(response, 400, "invalid_request_error")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "default-chat"}, "messages"),
        ({"model": 3, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "default-chat", "messages": [{"content": "x"}]}, "messages.0.role"),
        (chat_body(max_tokens="5"), "max_tokens"),
        (chat_body(max_tokens=-1), "max_tokens"),
        (chat_body(max_tokens=10**30), "max_tokens"),
        (chat_body(stream="yes"), "stream"),
    ],
)
async def test_wrong_or_missing_fields_are_400_naming_the_param(client, body, param):
    error = assert_openai_error(
        await client.post(ENDPOINT, json=body), 400, "invalid_request_error"
    )
    assert error["param"] == param


async def test_unknown_alias_is_404_model_not_found(client):
    error = assert_openai_error(
        await client.post(ENDPOINT, json={**chat_body(), "model": "gpt-imaginary"}),
        404,
        "model_not_found",
    )
    assert error["param"] == "model"


async def test_prompt_over_the_cap_is_400_before_any_upstream_call(client, upstream):
    response = await client.post(ENDPOINT, json=chat_body("word " * 50))
    assert_openai_error(response, 400, "prompt_too_large")
    assert not upstream.calls


async def test_body_over_max_body_bytes_is_413(client, upstream):
    response = await client.post(ENDPOINT, json=chat_body("x" * 400_000))
    assert_openai_error(response, 413, "request_too_large")
    assert not upstream.calls


async def test_oversized_chunked_body_is_cut_off_while_reading(client):
    async def stream():
        yield b"{" + b" " * 400_000

    response = await client.post(
        ENDPOINT, content=stream(), headers={"content-type": "application/json"}
    )
    assert_openai_error(response, 413, "request_too_large")


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "text/plain"],
)
async def test_non_json_content_types_are_415(client, content_type):
    response = await client.post(ENDPOINT, content=b"a=b", headers={"content-type": content_type})
    assert_openai_error(response, 415, "unsupported_media_type")


async def test_unknown_route_and_wrong_method_use_the_envelope(client):
    assert_openai_error(await client.get("/v1/nothing"), 404, "not_found")
    assert_openai_error(await client.get(ENDPOINT), 405, "method_not_allowed")


async def test_every_answer_carries_the_rate_limit_headers(client):
    for response in [
        await client.post(ENDPOINT, json=chat_body()),
        await client.post(ENDPOINT, content=b"{", headers={"content-type": "application/json"}),
        await client.post(ENDPOINT, json={**chat_body(), "model": "nope"}),
    ]:
        assert response.headers["x-ratelimit-limit-requests"] == "1000"
        assert "x-ratelimit-remaining-requests" in response.headers
