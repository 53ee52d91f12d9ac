"""Nesting, and what an admitted request gives back when it ends in an exception.

A body may nest objects and arrays ``max_json_depth`` levels (64) deep; deeper
is refused when the body is read, on every route, in the route's dialect,
whatever the depth (the encoder's own limit, 254, and the decoder's, 1024,
lie beyond it). Whatever ends an admitted request, even an exception nobody
planned for, its token reservation is released and the breaker's probe is
handed back.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from src.config import parse_config
from src.edge.app import create_app
from tests.hostile.harness import Exposure, HostileGateway, is_envelope, serve_in_thread

ROUTES = ("/v1/chat/completions", "/v1/chat", "/v1/embeddings", "/v1/messages")
LIMIT = 64
DEPTHS = (65, 100, 200, 254, 255, 256, 300, 512, 1000, 1023, 1024, 1025, 5000, 100_000)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _body(path: str, depth: int) -> bytes:
    """A valid body of ``path`` that nests exactly ``depth`` levels."""
    if path == "/v1/embeddings":
        base: dict[str, Any] = {"model": "chat", "input": "hi"}
    else:
        base = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    if path == "/v1/messages":
        base["max_tokens"] = 8
        # metadata is the one free-form field Anthropic's request has
        head = orjson.dumps({**base, "metadata": {"user_id": "u", "x": 0}})[:-3]
        return head + _nested(depth - 2) + b"}}"
    if path == "/v1/chat":
        base["client_id"] = "nester"
    return orjson.dumps(base)[:-1] + b',"user":' + _nested(depth - 1) + b"}"


@pytest.mark.parametrize("path", ROUTES)
def test_a_body_nested_past_the_limit_is_a_400_in_the_routes_dialect_at_any_depth(
    gateway: HostileGateway, exposure: Exposure, figures: Any, path: str
) -> None:
    refused: dict[int, tuple[int, str]] = {}
    headers = {"content-type": "application/json"}
    with httpx.Client(base_url=gateway.base_url, timeout=15) as client:
        at_limit = client.post(path, content=_body(path, LIMIT), headers=headers)
        exposure.answer(at_limit)
        for depth in DEPTHS:
            response = client.post(path, content=_body(path, depth), headers=headers)
            exposure.answer(response)
            assert is_envelope(response.status_code, response.content, path), response.text
            kind = response.json()["error"]["type"]
            refused[depth] = (response.status_code, kind)
    figures.add("nesting", cases=len(DEPTHS) + 1)
    figures.add("nesting", answered_5xx=sum(1 for s, _ in refused.values() if s >= 500))
    figures.record("nesting", max_json_depth=LIMIT)
    assert at_limit.status_code == 200, at_limit.text
    assert all(found == (400, "invalid_request_error") for found in refused.values()), refused


def _config(tmp_path: Path) -> dict[str, Any]:
    return {
        "providers": {
            "up": {
                "type": "openai",
                "base_url": "http://upstream.test/v1",
                "api_key_env": "NESTING_UPSTREAM_KEY",
                "timeout_s": 2,
            }
        },
        "aliases": {"chat": {"provider": "up", "model": "m1"}},
        "rate_limit": {"requests_per_minute": 1000, "tokens_per_minute": 600},
        "retry": {"max_attempts": 1},
        "breaker": {"failure_threshold": 1, "cooldown_s": 1.5},
        "log_file": str(tmp_path / "gateway.log"),
    }


def _answer(request: httpx.Request) -> httpx.Response:
    """The network edge: an upstream that fails, answers, or breaks in a way no one planned."""
    if b"boom" in request.content:
        raise RuntimeError("a failure the gateway has no mapping for")
    if b"down" in request.content:
        return httpx.Response(503, json={"error": {"message": "down"}})
    usage = {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}
    return httpx.Response(
        200,
        json={
            "id": "c1",
            "object": "chat.completion",
            "created": 1,
            "model": "m1",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "x"},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        },
    )


def test_an_exception_after_admission_releases_the_tokens_and_hands_back_the_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, figures: Any
) -> None:
    monkeypatch.setenv("NESTING_UPSTREAM_KEY", "sk-nesting-test")
    config = parse_config(_config(tmp_path))
    app = create_app(config, transport=lambda spec: httpx.MockTransport(_answer))

    def ask(client: httpx.Client, text: str) -> httpx.Response:
        # 500 completion tokens: two such reservations do not fit the 600 tokens a minute
        body = {"model": "chat", "messages": [{"role": "user", "content": text}], "max_tokens": 500}
        return client.post("/v1/chat/completions", json=body)

    with serve_in_thread(app) as (url, _), httpx.Client(base_url=url, timeout=10) as client:
        broken = ask(client, "boom")
        assert broken.status_code == 500, broken.text
        assert is_envelope(500, broken.content, "/v1/chat/completions")
        assert "RuntimeError" not in broken.text
        # the broken request's 502 tokens are back: a request of the same size is admitted
        after = ask(client, "hello")
        assert after.status_code == 200, after.text

        # the breaker opens on a failure; after its cool-down the broken request takes
        # the probe; the next request must not find the probe still taken
        assert ask(client, "down").status_code == 502
        assert client.get("/healthz?verbose=1").json()["targets"][0]["state"] == "open"
        time.sleep(1.6)
        assert ask(client, "boom").status_code == 500
        recovered = ask(client, "hello")
        assert recovered.status_code == 200, recovered.text
        assert client.get("/healthz?verbose=1").json()["targets"][0]["state"] == "closed"
    figures.record("nesting", exception_after_admission_released=True)
    assert os.environ["NESTING_UPSTREAM_KEY"] not in broken.text
