"""Streamed chat completions, through a real gateway socket to a real fake upstream.

The gateway runs under uvicorn in a thread (``serve_in_thread``) and calls the fake
upstream (``tests/support/upstream/``) over loopback through its real aiohttp
transport, so framing, buffering, timing and connection closes are the real ones.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from src.config import GatewayConfig, parse_config
from src.edge.app import create_app
from src.providers import STUB_TEXT
from tests.support.configs import PROVIDER_KEY, log_lines
from tests.support.gateway import serve_in_thread
from tests.support.loopback import wait_until
from tests.support.payloads import chat_body
from tests.support.upstream import Behaviour, FakeUpstream, drip

SSE_TIMEOUT = httpx.Timeout(10.0)


def stream_config(tmp_path: Path, up: FakeUpstream, **overrides: Any) -> GatewayConfig:
    """``default-chat``: provider ``up`` (keyed) model-a, then ``backup`` (keyless) model-b."""
    data: dict[str, Any] = {
        "providers": {
            "up": {
                "type": "openai",
                "base_url": up.base_url,
                "api_key_env": "TEST_PRIMARY_KEY",
                "timeout_s": 5,
            },
            "backup": {"type": "openai", "base_url": up.base_url, "timeout_s": 5},
        },
        "aliases": {
            "default-chat": {
                "provider": "up",
                "model": "model-a",
                "fallbacks": [{"provider": "backup", "model": "model-b"}],
            },
        },
        "rate_limit": {"requests_per_minute": 1000},
        "log_file": str(tmp_path / "gw.log"),
    }
    data.update(overrides)
    return parse_config(data)


@pytest.fixture
def gateway(provider_key: str) -> Iterator[Callable[[GatewayConfig], str]]:
    """``gateway(config)`` → the base URL of the gateway app served on a loopback socket."""
    with ExitStack() as stack:
        yield lambda config: stack.enter_context(serve_in_thread(create_app(config))).url


@pytest.fixture
def config(tmp_path: Path, fake_upstream: FakeUpstream) -> GatewayConfig:
    return stream_config(tmp_path, fake_upstream)


class Stream:
    """What the client saw of one streamed response."""

    def __init__(self, response: httpx.Response, started: float) -> None:
        self.response = response
        self.started = started
        self.raw = b""
        self.events: list[str] = []  # the data of each SSE event
        self.arrivals: list[float] = []  # time.monotonic() when each event arrived

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return [json.loads(e) for e in self.events if e != "[DONE]"]

    @property
    def text(self) -> str:
        return "".join(
            choice["delta"].get("content") or ""
            for chunk in self.chunks
            for choice in chunk.get("choices", [])
        )

    @property
    def content_chunks(self) -> list[dict[str, Any]]:
        return [
            c for c in self.chunks if any(ch["delta"].get("content") for ch in c.get("choices", []))
        ]

    @property
    def request_id(self) -> str:
        return self.response.headers["x-request-id"]


async def stream_chat(base_url: str, body: dict[str, Any], **headers: str) -> Stream:
    """POST a streamed chat and read the whole answer, noting when each event arrived."""
    body = {**body, "stream": True}
    async with httpx.AsyncClient(base_url=base_url, timeout=SSE_TIMEOUT) as client:
        started = time.monotonic()
        async with client.stream(
            "POST", "/v1/chat/completions", json=body, headers=headers
        ) as response:
            seen = Stream(response, started)
            buffer = b""
            async for piece in response.aiter_raw():
                now = time.monotonic()
                seen.raw += piece
                buffer += piece
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    if event.startswith(b"data: "):
                        seen.events.append(event[6:].decode())
                        seen.arrivals.append(now)
    return seen


def line_for(config: GatewayConfig, request_id: str, timeout: float = 3.0) -> dict[str, Any]:
    """The telemetry line of ``request_id``, once written (the writer flushes every 50 ms)."""

    def find() -> list[dict[str, Any]]:
        return [line for line in log_lines(config) if line["request_id"] == request_id]

    lines = wait_until(find, timeout)
    assert len(lines) == 1, f"expected one telemetry line for {request_id}, got {lines}"
    return lines[0]


# -- framing and shape -------------------------------------------------------------


async def test_sse_events_are_data_json_blank_line_and_the_stream_ends_with_done(gateway, config):
    seen = await stream_chat(gateway(config), chat_body())
    assert seen.response.status_code == 200
    assert seen.response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert seen.response.headers["cache-control"] == "no-cache"
    assert seen.raw.endswith(b"data: [DONE]\n\n")
    frames = seen.raw.split(b"\n\n")
    assert frames[-1] == b""  # every event, the last included, ends with a blank line
    for frame in frames[:-2]:
        assert frame.startswith(b"data: ")
        assert b"\n" not in frame  # one data line per event
        assert isinstance(orjson.loads(frame[6:]), dict)
    assert frames[-2] == b"data: [DONE]"
    assert seen.events.count("[DONE]") == 1


@pytest.mark.parametrize("include_usage", [False, True])
async def test_every_chunk_validates_against_the_stream_schema_and_names_the_alias(
    gateway, config, fake_upstream, validate_schema, include_usage
):
    body = chat_body(stream_options={"include_usage": include_usage})
    seen = await stream_chat(gateway(config), body)
    chunks = seen.chunks
    assert len(chunks) >= 3
    for chunk in chunks:
        validate_schema(chunk, "CreateChatCompletionStreamResponse")
        assert chunk["model"] == "default-chat"
        assert chunk["object"] == "chat.completion.chunk"
    assert fake_upstream.requests[0].model == "model-a"
    assert seen.text == Behaviour().text


@pytest.mark.slow
async def test_chunks_are_forwarded_as_they_arrive_not_buffered(gateway, config, fake_upstream):
    fake_upstream.behave("model-a", drip(8, 0.15))
    base_url = gateway(config)
    body = {**chat_body(), "stream": True}
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=SSE_TIMEOUT) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        arrivals = []
        upstream_done_at_first_content: bool | None = None
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if any(c["delta"].get("content") for c in chunk["choices"]):
                arrivals.append(time.monotonic())
                if upstream_done_at_first_content is None:
                    upstream_done_at_first_content = (
                        fake_upstream.requests[0].completed_at is not None
                    )
    assert len(arrivals) == 8
    # The first content chunk reached the client while the upstream was still dripping…
    assert upstream_done_at_first_content is False
    # …and the chunks arrived spread out as they were sent (7 gaps of 0.15 s), not in one burst.
    assert arrivals[-1] - arrivals[0] > 0.7
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert sum(gap > 0.05 for gap in gaps) >= 5


# -- usage -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream_options", "forwarded"),
    [
        (None, False),
        ({"include_usage": False}, False),
        ({"include_usage": False, "continuous_usage_stats": True}, False),
        ({"include_usage": True}, True),
    ],
)
async def test_gateway_always_asks_upstream_for_usage_but_forwards_it_only_when_asked(
    gateway, config, fake_upstream, stream_options, forwarded
):
    body = chat_body() if stream_options is None else chat_body(stream_options=stream_options)
    seen = await stream_chat(gateway(config), body)
    sent = fake_upstream.requests[0].body
    assert sent["stream"] is True
    assert sent["stream_options"] == {**(stream_options or {}), "include_usage": True}
    usage_chunks = [c for c in seen.chunks if c["choices"] == []]
    if forwarded:
        assert len(usage_chunks) == 1
        assert seen.chunks[-1] is not None and seen.chunks[-1]["choices"] == []
        assert usage_chunks[0]["usage"] == {
            "prompt_tokens": 9,
            "completion_tokens": 42,
            "total_tokens": 51,
        }
    else:
        assert usage_chunks == []
        # Not asked for usage, the client sees no trace of it (OpenAI sends the field only when asked).
        assert all("usage" not in chunk for chunk in seen.chunks)


async def test_upstream_without_usage_gets_usage_approximated_from_the_streamed_words(
    gateway, config, fake_upstream
):
    text = ("Five words are streamed here", " and then", " three more.")
    fake_upstream.behave("model-a", pieces=text, usage=False)
    body = chat_body("one two three", stream_options={"include_usage": True})
    seen = await stream_chat(gateway(config), body)
    assert seen.text == "".join(text)
    usage_chunk = seen.chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["model"] == "default-chat"
    # The stub rule: prompt = words + 1 per message; completion = words of the streamed text.
    assert usage_chunk["usage"] == {"prompt_tokens": 4, "completion_tokens": 9, "total_tokens": 13}
    line = line_for(config, seen.request_id)
    assert (line["prompt_tokens"], line["completion_tokens"]) == (4, 9)


@pytest.mark.parametrize(("upstream_usage", "used"), [(True, 9 + 42), (False, 2 + 5)])
async def test_streamed_tokens_count_against_the_token_limit_after_reconciliation(
    tmp_path, gateway, fake_upstream, upstream_usage, used
):
    fake_upstream.behave("model-a", usage=upstream_usage)  # text: 5 words
    config = stream_config(
        tmp_path, fake_upstream, rate_limit={"requests_per_minute": 1000, "tokens_per_minute": 1000}
    )
    base_url = gateway(config)
    seen = await stream_chat(base_url, chat_body(max_tokens=100))  # prompt "hi": 2 tokens
    assert seen.events[-1] == "[DONE]"
    assert seen.response.headers["x-ratelimit-remaining-tokens"] == str(1000 - (2 + 100))
    after = await stream_chat(base_url, chat_body(max_tokens=10))
    # The first stream's reservation (102) was replaced by what it really used.
    assert after.response.headers["x-ratelimit-remaining-tokens"] == str(1000 - used - (2 + 10))


# -- fallbacks and failures ------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [{"status": 500}, {"status": 429}, {"fail_after": 0}],
    ids=["http-500", "http-429", "closed-before-first-chunk"],
)
async def test_a_target_failing_before_its_first_chunk_falls_back_to_the_next_one(
    gateway, config, fake_upstream, validate_schema, failure
):
    fake_upstream.behave("model-a", **failure)
    fake_upstream.behave("model-b", pieces=("Answer", " from", " the", " fallback."))
    seen = await stream_chat(gateway(config), chat_body())
    assert seen.response.status_code == 200
    assert [r.model for r in fake_upstream.requests] == ["model-a", "model-b"]
    assert seen.text == "Answer from the fallback."
    assert seen.events[-1] == "[DONE]"
    for chunk in seen.chunks:
        validate_schema(chunk, "CreateChatCompletionStreamResponse")
        assert chunk["model"] == "default-chat"
    line = line_for(config, seen.request_id)
    assert (line["provider"], line["targets_tried"], line["outcome"]) == ("backup", 2, "completed")


async def test_all_targets_failing_before_the_first_chunk_is_a_json_error_not_a_stream(
    gateway, config, fake_upstream
):
    fake_upstream.behave(status=500)
    seen = await stream_chat(gateway(config), chat_body())
    assert seen.response.status_code == 502
    assert seen.response.headers["content-type"].startswith("application/json")
    assert orjson.loads(seen.raw)["error"]["type"] == "upstream_error"
    line = line_for(config, seen.request_id)
    assert (line["outcome"], line["stream"], line["targets_tried"]) == ("upstream_error", True, 2)


@pytest.mark.parametrize("framing", ["chunked", "eof"])
async def test_upstream_failing_mid_stream_ends_with_one_error_event_and_no_done(
    gateway, config, fake_upstream, framing
):
    fake_upstream.behave("model-a", fail_after=3, framing=framing)  # role chunk + 2 content chunks
    seen = await stream_chat(gateway(config), chat_body())
    assert seen.response.status_code == 200
    assert "[DONE]" not in seen.events
    *relayed, last = [json.loads(e) for e in seen.events]
    assert [c["choices"][0]["delta"].get("content") for c in relayed] == ["", "Hello", " from"]
    assert all("error" not in c for c in relayed)
    assert set(last) == {"error"}
    error = last["error"]
    assert set(error) == {"type", "message", "param", "code"}
    assert error["type"] == "upstream_error"
    assert error["message"].startswith("The upstream stream failed: ")
    assert (error["param"], error["code"]) == (None, "upstream_error")
    assert PROVIDER_KEY not in error["message"]
    # After the first byte there is no fallback.
    assert [r.model for r in fake_upstream.requests] == ["model-a"]
    line = line_for(config, seen.request_id)
    assert line["outcome"] == "upstream_error"
    assert line["stream"] is True
    assert line["completion_tokens"] == 2  # "Hello from"


async def test_client_disconnect_mid_stream_closes_the_upstream_within_a_second(
    gateway, config, fake_upstream
):
    fake_upstream.behave("model-a", drip(50, 0.2))  # 10 s of chunks if nobody stops it
    base_url = gateway(config)
    body = {**chat_body(), "stream": True}
    async with httpx.AsyncClient(base_url=base_url, timeout=SSE_TIMEOUT) as client:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            request_id = response.headers["x-request-id"]
            async for text in response.aiter_lines():
                if text.startswith("data: {") and json.loads(text[6:])["choices"][0]["delta"].get(
                    "content"
                ):
                    break  # the first content chunk: leave
        left_at = time.monotonic()  # the response (and its connection) is closed here
    upstream_request = fake_upstream.requests[0]
    assert upstream_request.wait_closed(3), "the upstream connection stayed open"
    assert upstream_request.completed_at is None
    assert upstream_request.closed_by_peer_at is not None
    assert upstream_request.closed_by_peer_at - left_at < 1.0
    assert upstream_request.events_sent < 50
    line = line_for(config, request_id)
    assert line["outcome"] == "client_disconnected"
    assert line["stream"] is True
    assert line["completion_tokens"] > 0
    assert line["prompt_tokens"] == 2


# -- stub mode, telemetry, timing ------------------------------------------------------


async def test_stub_mode_streams_the_stub_text_in_several_chunks(
    tmp_path, gateway, fake_upstream, monkeypatch, validate_schema
):
    monkeypatch.delenv("E2E_UNSET_KEY", raising=False)
    config = stream_config(
        tmp_path,
        fake_upstream,
        providers={
            "stubbed": {
                "type": "openai",
                "base_url": fake_upstream.base_url,
                "api_key_env": "E2E_UNSET_KEY",
            }
        },
        aliases={"default-chat": {"provider": "stubbed", "model": "m"}},
    )
    seen = await stream_chat(gateway(config), chat_body(stream_options={"include_usage": True}))
    assert len(seen.content_chunks) >= 3
    assert seen.text == STUB_TEXT
    assert seen.events[-1] == "[DONE]"
    for chunk in seen.chunks:
        validate_schema(chunk, "CreateChatCompletionStreamResponse")
        assert chunk["model"] == "default-chat"
    assert seen.chunks[-1]["usage"]["completion_tokens"] == len(STUB_TEXT.split())
    assert fake_upstream.requests == []
    assert line_for(config, seen.request_id)["stub"] is True


@pytest.mark.slow
async def test_telemetry_writes_one_line_per_stream_when_it_ends(gateway, config, fake_upstream):
    fake_upstream.behave("model-a", drip(6, 0.1, first_delay_s=0.1))
    seen = await stream_chat(gateway(config), chat_body())
    line = line_for(config, seen.request_id)
    assert len(log_lines(config)) == 1
    assert line["stream"] is True
    assert line["outcome"] == "completed"
    assert line["status"] == 200
    assert (line["alias"], line["provider"], line["upstream_model"]) == (
        "default-chat",
        "up",
        "model-a",
    )
    assert (line["prompt_tokens"], line["completion_tokens"], line["total_tokens"]) == (9, 42, 51)
    assert 80 <= line["ttft_ms"] < line["latency_ms"]
    # Written when the stream ended, not when it started: the latency covers the whole
    # stream, which the upstream alone takes 0.1 s + 6 x 0.1 s to send.
    assert line["latency_ms"] >= 650


async def test_time_to_first_byte_through_the_gateway_stays_close_to_the_upstreams(
    gateway, config, fake_upstream
):
    fake_upstream.behave("model-a", first_delay_s=0.3)
    base_url = gateway(config)
    await stream_chat(base_url, chat_body())  # warm the gateway's connection pool
    body = {**chat_body(), "stream": True}
    async with httpx.AsyncClient(base_url=base_url, timeout=SSE_TIMEOUT) as client:
        started = time.monotonic()
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            pieces = response.aiter_raw()
            await anext(pieces)
            first_byte = time.monotonic() - started
            async for _ in pieces:
                pass
    upstream = fake_upstream.requests[-1]
    assert upstream.first_event_at is not None
    assert 0.3 <= first_byte < 0.3 + 0.25


# -- non-streamed calls: the same disconnect promise ------------------------------------


async def test_client_leaving_a_non_streamed_call_cancels_the_upstream_within_a_second(
    gateway, config, fake_upstream
):
    fake_upstream.behave("model-a", first_delay_s=10)
    base_url = gateway(config)
    async with httpx.AsyncClient(base_url=base_url) as client:
        task = asyncio.create_task(client.post("/v1/chat/completions", json=chat_body()))
        [upstream_request] = await asyncio.to_thread(fake_upstream.wait_for_requests, 1)
        task.cancel()  # the client gives up: its connection closes
        left_at = time.monotonic()
    assert await asyncio.to_thread(upstream_request.wait_closed, 3), "upstream call kept running"
    assert upstream_request.closed_by_peer_at is not None
    assert upstream_request.closed_by_peer_at - left_at < 1.0
    assert upstream_request.completed_at is None
    await asyncio.sleep(0.2)  # the telemetry writer flushes every 50 ms
    [line] = [json.loads(raw) for raw in Path(config.log_file).read_text().splitlines()]
    assert line["outcome"] == "client_disconnected" and line["status"] == 499
