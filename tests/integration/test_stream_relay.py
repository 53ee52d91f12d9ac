"""The stream relay at the ASGI seam: what one upstream read brings leaves in one piece,
and a chat stream that passes through keeps the provider's bytes but the model.

The app runs in-process against a respx upstream whose SSE body arrives in one
read, and an ASGI driver records every message the app sends, so that the
number of writes and their exact bytes can be asserted.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
import respx

from src.edge.app import create_app
from tests.support.configs import UPSTREAM, make_config
from tests.support.payloads import chat_body

# A provider's stream written its own way: fields in its own order, a vendor field,
# an escaped character, a usage null on every chunk but the last (OpenAI's way when
# include_usage is set).
PROVIDER_EVENTS = [
    b'{"id":"c-1","object":"chat.completion.chunk","created":7,"model":"up-model-a",'
    b'"system_fingerprint":"fp_x","choices":[{"index":0,"delta":{"role":"assistant",'
    b'"content":""},"logprobs":null,"finish_reason":null}],"usage":null}',
    b'{"id":"c-1","object":"chat.completion.chunk","created":7,"model":"up-model-a",'
    b'"choices":[{"index":0,"delta":{"content":"caf\\u00e9 au"},"logprobs":null,'
    b'"finish_reason":null}],"usage":null,"vendor":{"k":[1,2]}}',
    b'{"id":"c-1","object":"chat.completion.chunk","created":7,"model":"up-model-a",'
    b'"choices":[{"index":0,"delta":{"content":" lait"},"logprobs":null,'
    b'"finish_reason":null}],"usage":null}',
    b'{"id":"c-1","object":"chat.completion.chunk","created":7,"model":"up-model-a",'
    b'"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}',
    b'{"id":"c-1","object":"chat.completion.chunk","created":7,"model":"up-model-a",'
    b'"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}}',
]
SSE = b"".join(b"data: " + event + b"\n\n" for event in PROVIDER_EVENTS) + b"data: [DONE]\n\n"


async def stream_messages(app: Any, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every ASGI message the app sends for one streamed chat request."""
    raw = orjson.dumps({**body, "stream": True})
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"gateway.test"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    messages: list[dict[str, Any]] = []
    ended = asyncio.get_running_loop().create_future()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await ended
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            ended.set_result(None)

    await app(scope, receive, send)
    return messages


@pytest.fixture
async def relay(tmp_path, provider_key):
    router = respx.MockRouter(assert_all_called=False)
    router.post(f"{UPSTREAM}/chat/completions").respond(
        content=SSE, headers={"content-type": "text/event-stream"}
    )
    app = create_app(
        make_config(tmp_path), transport=lambda spec: httpx.MockTransport(router.async_handler)
    )
    async with app.lifespan():
        yield app


def bodies(messages: list[dict[str, Any]]) -> list[bytes]:
    return [m["body"] for m in messages if m["type"] == "http.response.body" and m["body"]]


async def test_the_events_of_one_upstream_read_leave_in_one_write(relay):
    messages = await stream_messages(relay, chat_body(stream_options={"include_usage": True}))
    sent = bodies(messages)
    # The upstream's whole stream came in one read: its events go in one piece, then
    # the gateway's own end of the stream.
    assert len(sent) == 2
    assert sent[0].count(b"data: ") == len(PROVIDER_EVENTS)
    assert sent[1] == b"data: [DONE]\n\n"


async def test_a_passed_through_chat_stream_keeps_the_providers_bytes_but_the_model(relay):
    messages = await stream_messages(relay, chat_body(stream_options={"include_usage": True}))
    expected = SSE.replace(b'"model":"up-model-a"', b'"model":"default-chat"')
    assert b"".join(bodies(messages)) == expected


async def test_without_usage_asked_for_the_null_usage_and_the_usage_chunk_are_left_out(relay):
    messages = await stream_messages(relay, chat_body())
    chunks = [
        orjson.loads(frame[6:])
        for frame in b"".join(bodies(messages)).split(b"\n\n")
        if frame.startswith(b"data: {")
    ]
    assert len(chunks) == len(PROVIDER_EVENTS) - 1
    assert all("usage" not in chunk and chunk["model"] == "default-chat" for chunk in chunks)
    assert chunks[1]["choices"][0]["delta"]["content"] == "café au"
    assert chunks[1]["vendor"] == {"k": [1, 2]}
