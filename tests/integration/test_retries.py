"""Retries per target with exponential backoff and jitter, Retry-After, and the request deadline."""

from __future__ import annotations

import asyncio
import itertools
import time

import httpx
import pytest

from tests.support.configs import UPSTREAM, log_lines, make_config
from tests.support.payloads import chat_body, completion

PRIMARY = f"{UPSTREAM}/chat/completions"
SECONDARY = "http://secondary.test/v1/chat/completions"


def config_with(tmp_path, retry=None, **extra):
    return make_config(
        tmp_path,
        retry=retry or {"max_attempts": 3, "base_backoff_s": 0.01, "max_backoff_s": 0.05},
        **extra,
    )


def failing_then_ok(*failures):
    """A side effect answering ``failures`` in turn, then a completion; records call times."""
    calls: list[float] = []

    def respond(request: httpx.Request) -> httpx.Response:
        calls.append(time.monotonic())
        if len(calls) <= len(failures):
            failure = failures[len(calls) - 1]
            if isinstance(failure, Exception):
                raise failure
            return failure
        return httpx.Response(200, json=completion("after retry"))

    return respond, calls


@pytest.mark.parametrize(
    "failure",
    [httpx.Response(503), httpx.Response(500), httpx.Response(429), httpx.ConnectError("refused")],
    ids=["503", "500", "429", "connect-error"],
)
async def test_retryable_failure_is_retried_on_the_same_target(
    gateway_client, upstream, tmp_path, provider_key, failure
):
    respond, calls = failing_then_ok(failure)
    upstream.post(PRIMARY).mock(side_effect=respond)
    fallback = upstream.post(SECONDARY).respond(json=completion("fallback"))
    config = config_with(tmp_path)
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.json()["choices"][0]["message"]["content"] == "after retry"
    assert len(calls) == 2 and fallback.call_count == 0
    client.app.state.telemetry.writer.close()
    [line] = log_lines(config)
    assert line["retries"] == 1 and line["targets_tried"] == 1


@pytest.mark.parametrize("status", [401, 404], ids=["401", "404"])
async def test_other_failures_move_on_without_retrying(
    gateway_client, upstream, tmp_path, provider_key, status
):
    first = upstream.post(PRIMARY).respond(status)
    upstream.post(SECONDARY).respond(json=completion("fallback"))
    client = await gateway_client(config_with(tmp_path))
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.json()["choices"][0]["message"]["content"] == "fallback"
    assert first.call_count == 1


async def test_attempts_per_target_are_bounded_then_the_fallback_runs(
    gateway_client, upstream, tmp_path, provider_key
):
    first = upstream.post(PRIMARY).respond(503)
    upstream.post(SECONDARY).respond(json=completion("fallback"))
    client = await gateway_client(config_with(tmp_path))
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.json()["choices"][0]["message"]["content"] == "fallback"
    assert first.call_count == 3


async def test_backoff_grows_exponentially_with_jitter(
    gateway_client, upstream, tmp_path, provider_key
):
    respond, calls = failing_then_ok(*[httpx.Response(503)] * 3)
    upstream.post(PRIMARY).mock(side_effect=respond)
    retry = {"max_attempts": 4, "base_backoff_s": 0.08, "max_backoff_s": 10}
    client = await gateway_client(config_with(tmp_path, retry, breaker={"failure_threshold": 10}))
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200 and len(calls) == 4
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    for attempt, gap in enumerate(gaps):
        ceiling = 0.08 * 2**attempt
        # equal jitter: between half the ceiling and the ceiling (plus scheduling slack)
        assert ceiling / 2 - 0.005 <= gap <= ceiling + 0.1, (attempt, gaps)


async def test_retry_after_is_honoured_before_the_retry(
    gateway_client, upstream, tmp_path, provider_key
):
    respond, calls = failing_then_ok(httpx.Response(429, headers={"Retry-After": "0.4"}))
    upstream.post(PRIMARY).mock(side_effect=respond)
    client = await gateway_client(config_with(tmp_path))
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200 and len(calls) == 2
    assert calls[1] - calls[0] >= 0.39


async def test_retry_after_beyond_the_cap_moves_on_at_once(
    gateway_client, upstream, tmp_path, provider_key
):
    first = upstream.post(PRIMARY).respond(429, headers={"Retry-After": "30"})
    upstream.post(SECONDARY).respond(json=completion("fallback"))
    client = await gateway_client(config_with(tmp_path, retry_after_cap_s=1))
    started = time.monotonic()
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.json()["choices"][0]["message"]["content"] == "fallback"
    assert first.call_count == 1 and time.monotonic() - started < 0.5


async def slow(request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(5)
    return httpx.Response(200, json=completion())


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_the_deadline_answers_504_at_once(
    gateway_client, upstream, tmp_path, provider_key, stream
):
    upstream.post(PRIMARY).mock(side_effect=slow)
    config = config_with(tmp_path, deadline_s=0.3)
    client = await gateway_client(config)
    started = time.monotonic()
    response = await client.post("/v1/chat/completions", json=chat_body(stream=stream))
    elapsed = time.monotonic() - started
    assert response.status_code == 504 and elapsed < 1.0
    error = response.json()["error"]
    assert error["type"] == "upstream_timeout"
    assert "deadline of 0.3 s" in error["message"]
    assert response.headers["x-ratelimit-limit-requests"] == "1000"
    client.app.state.telemetry.writer.close()
    [line] = log_lines(config)
    assert line["status"] == 504 and line["outcome"] == "upstream_error"


async def test_an_alias_deadline_overrides_the_global_one(
    gateway_client, upstream, tmp_path, provider_key
):
    upstream.post(PRIMARY).mock(side_effect=slow)
    aliases = {"solo": {"provider": "primary", "model": "m", "deadline_s": 0.2}}
    client = await gateway_client(config_with(tmp_path, deadline_s=30, aliases=aliases))
    started = time.monotonic()
    response = await client.post("/v1/chat/completions", json=chat_body(model="solo"))
    assert response.status_code == 504 and time.monotonic() - started < 0.8


async def test_retries_never_sleep_past_the_deadline(
    gateway_client, upstream, tmp_path, provider_key
):
    first = upstream.post(PRIMARY).respond(503)
    aliases = {"solo": {"provider": "primary", "model": "m"}}
    retry = {"max_attempts": 10, "base_backoff_s": 0.2, "max_backoff_s": 5}
    config = config_with(
        tmp_path, retry, deadline_s=0.5, aliases=aliases, breaker={"failure_threshold": 10}
    )
    client = await gateway_client(config)
    started = time.monotonic()
    response = await client.post("/v1/chat/completions", json=chat_body(model="solo"))
    # A sleep past the deadline would answer 504; the last real failure comes before it.
    assert response.status_code == 502
    assert time.monotonic() - started < 1.5  # generous: a loaded machine adds latency
    assert 2 <= first.call_count < 10
