"""A fake provider speaking OpenAI chat, OpenAI Responses and Anthropic Messages, on loopback.

Tests queue what the next call to a path answers (``answer``: a JSON body, or
server-sent events, with a status), and read back what arrived: each request's
path, headers and exact body bytes (``received``), so that "arrives unchanged"
can be asserted byte for byte on the upstream side. A path with nothing queued
answers a plain default in its own dialect.

    upstream = NativeUpstream()
    with serve_app(upstream) as base: ...
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
from starlette.types import Receive, Scope, Send

# OpenAI's published schemas of the Responses API (a subset of its OpenAPI description).
RESPONSES_SCHEMA = Path(__file__).parent.parent / "fixtures" / "openai-responses-subset.json"


def responses_validator(name: str) -> jsonschema.protocols.Validator:
    """A validator for the Responses API's schema ``name`` (``Response``, ...)."""
    document = json.loads(RESPONSES_SCHEMA.read_text())
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


@dataclass
class Arrived:
    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw)


@dataclass
class Canned:
    status: int = 200
    json: Any = None
    events: list[dict[str, Any]] | None = None  # SSE: ``event: <type>`` (if any) and data
    named: bool = True  # frame events with ``event: <type>`` lines (Anthropic, Responses)


def sse(events: list[dict[str, Any]], named: bool = True) -> bytes:
    out = b""
    for event in events:
        if named:
            out += b"event: " + event["type"].encode() + b"\n"
        out += b"data: " + json.dumps(event).encode() + b"\n\n"
    return out if named else out + b"data: [DONE]\n\n"


class NativeUpstream:
    """The ASGI app of the fake provider."""

    def __init__(self) -> None:
        self.received: list[Arrived] = []
        self._queued: dict[str, deque[Canned]] = defaultdict(deque)

    def answer(self, path: str, canned: Canned) -> None:
        """Queue the answer of the next request to ``path`` (e.g. ``/v1/messages``)."""
        self._queued[path].append(canned)

    def last(self, path: str) -> Arrived:
        return next(arrived for arrived in reversed(self.received) if arrived.path == path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        path = scope["path"]
        self.received.append(Arrived(path, headers, raw))
        queue = self._queued.get(path)
        canned = queue.popleft() if queue else _default(path, raw)
        if canned.events is not None:
            content, kind = sse(canned.events, canned.named), b"text/event-stream"
        else:
            content, kind = json.dumps(canned.json).encode(), b"application/json"
        await send(
            {
                "type": "http.response.start",
                "status": canned.status,
                "headers": [(b"content-type", kind)],
            }
        )
        await send({"type": "http.response.body", "body": content})


def _default(path: str, raw: bytes) -> Canned:
    body = json.loads(raw) if raw else {}
    if path.endswith("/count_tokens"):
        return Canned(json={"input_tokens": 42})
    if path.endswith("/messages"):
        return Canned(json=anthropic_message([{"type": "text", "text": "Hello from Claude."}]))
    if path.endswith("/chat/completions"):
        return Canned(json=chat_completion("Hello from GPT.", body.get("model")))
    return Canned(status=404, json={"error": {"message": f"no {path}", "type": "not_found"}})


def anthropic_message(content: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {
        "id": "msg_01Fake",
        "type": "message",
        "role": "assistant",
        "model": "claude-up",
        "content": content,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 6},
        **fields,
    }


def chat_completion(text: str | None, model: Any = "gpt-up", **message: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None, **message},
                "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
    }
