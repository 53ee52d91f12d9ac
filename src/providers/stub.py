"""Stub mode: a provider whose key variable is unset answers with a canned text.

Embeddings are deterministic pseudo-vectors (16 numbers, or ``dimensions``).
It lets the routing, limiting and telemetry pipeline run with no provider at
all, and reports no usage, so the gateway's approximation applies as it would
to any upstream that reports none. It speaks OpenAI's chat completions and
embeddings; a request in another dialect reaches it through that dialect's
translator into chat, as it would reach any chat-only provider.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from ..errors import UnsupportedField
from .base import Chunk, Event, Outbound, Reply
from .operations import Operation

STUB_TEXT = (
    "This is a stub response from the gateway. Configure a valid API key to get real completions."
)
_STREAM_PIECES = 6
_STUB_DIMS = 16


class StubProvider:
    stub = True
    kind = "stub"
    speaks = frozenset({"chat", "embeddings"})
    default_max_tokens = 4096

    def __init__(self, name: str) -> None:
        self.name = name
        self.who = f"provider {name!r} (stub)"

    async def call(self, op: Operation, model: str, request: Outbound) -> Reply:
        if op.name == "chat":
            return Reply(self._complete(model))
        if op.name == "embeddings":
            return Reply(self._embed(model, request.body))
        raise UnsupportedField(self.who, "model", f"it has no {op.name} API")

    async def open(self, op: Operation, model: str, request: Outbound) -> _StubStream:
        if op.name != "chat":
            raise UnsupportedField(self.who, "stream", f"it cannot stream {op.name}")
        return _StubStream(model)

    def _complete(self, model: str) -> dict[str, Any]:
        return {
            "id": _stub_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": STUB_TEXT, "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
        }

    def _embed(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        """One deterministic vector per input (the same input, the same vector)."""
        inputs = body.get("input")
        items: list[Any] = (
            inputs if isinstance(inputs, list) and inputs and not _is_tokens(inputs) else [inputs]
        )
        dimensions = body.get("dimensions")
        size = dimensions if isinstance(dimensions, int) else _STUB_DIMS
        data = [
            {"object": "embedding", "index": i, "embedding": _vector(repr(item), size)}
            for i, item in enumerate(items)
        ]
        return {"object": "list", "data": data, "model": model}


def _is_tokens(inputs: list[Any]) -> bool:
    return all(isinstance(item, int) for item in inputs)


def _vector(text: str, size: int) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    return [round(seed[i % len(seed)] / 255 - 0.5, 6) for i in range(size)]


def _stub_id() -> str:
    return "chatcmpl-stub" + os.urandom(6).hex()


class _StubStream:
    def __init__(self, model: str) -> None:
        self._model = model
        self._id = _stub_id()

    async def __aiter__(self) -> AsyncIterator[list[Event]]:
        created = int(time.time())
        words = STUB_TEXT.split(" ")
        size = -(-len(words) // _STREAM_PIECES)
        pieces = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
        for index, piece in enumerate(pieces):
            delta: dict[str, Any] = {"content": piece if index == 0 else " " + piece}
            if index == 0:
                delta["role"] = "assistant"
            yield [_event(self._chunk(created, delta, None))]
        yield [_event(self._chunk(created, {}, "stop"))]

    def _chunk(self, created: int, delta: dict[str, Any], finish: str | None) -> Chunk:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }

    async def aclose(self) -> None:
        return None


def _event(chunk: Chunk) -> Event:
    return Event(None, b"", chunk)
