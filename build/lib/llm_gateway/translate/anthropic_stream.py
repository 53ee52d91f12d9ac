"""Streams between Anthropic's Messages events and OpenAI's ``chat.completion.chunk``s, both ways.

``ChunksFromEvents`` turns an Anthropic upstream's events into OpenAI chunks
(for the Anthropic adapter); ``EventsFromChunks`` turns the gateway's OpenAI
chunks into Anthropic events in Anthropic's framing, ``event: <name>`` then
``data: <json>`` (for the inbound ``/v1/messages``).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from .anthropic_response import STOP_REASONS, finish_reason, openai_usage, tool_use_block

Chunk = dict[str, Any]


class UpstreamErrorEvent(Exception):
    """The upstream sent an ``error`` event; ``kind`` is its error type."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class ChunksFromEvents:
    """Anthropic stream events in, OpenAI chunks out; ``done`` after ``message_stop``."""

    def __init__(self) -> None:
        self.done = False
        self._id = ""
        self._model = ""
        self._created = int(time.time())
        self._usage: dict[str, Any] = {}
        self._tools: dict[int, int] = {}  # content block index -> tool call index

    def feed(self, event: dict[str, Any]) -> list[Chunk]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self._id, self._model = str(message.get("id", "")), str(message.get("model", ""))
            self._usage.update(message.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "content_block_delta":
            return self._block_delta(event)
        if kind == "message_delta":
            self._usage.update(
                {k: v for k, v in (event.get("usage") or {}).items() if v is not None}
            )
            reason = finish_reason((event.get("delta") or {}).get("stop_reason"))
            return [self._chunk({}, reason)] if reason else []
        if kind == "message_stop":
            self.done = True
            usage = openai_usage(self._usage)
            return [self._usage_chunk(usage)] if usage else []
        if kind == "error":
            error = event.get("error") or {}
            raise UpstreamErrorEvent(str(error.get("type")), str(error.get("message", "")))
        return []  # ping, content_block_stop, and event types added after this was written

    def _block_start(self, event: dict[str, Any]) -> list[Chunk]:
        block = event.get("content_block") or {}
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if block.get("type") != "tool_use":
            return []
        index = len(self._tools)
        self._tools[int(event.get("index", 0))] = index
        call = {
            "index": index,
            "id": block.get("id"),
            "type": "function",
            "function": {"name": block.get("name"), "arguments": ""},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, event: dict[str, Any]) -> list[Chunk]:
        delta = event.get("delta") or {}
        if delta.get("type") == "text_delta":
            return [self._chunk({"content": delta.get("text", "")})]
        tool = self._tools.get(int(event.get("index", 0)))
        if delta.get("type") == "input_json_delta" and tool is not None:
            call = {"index": tool, "function": {"arguments": delta.get("partial_json", "")}}
            return [self._chunk({"tool_calls": [call]})]
        return []  # thinking and signature deltas have no OpenAI equivalent

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Chunk:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }

    def _usage_chunk(self, usage: dict[str, Any]) -> Chunk:
        chunk = self._chunk({})
        chunk["choices"], chunk["usage"] = [], usage
        return chunk


def sse_event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class EventsFromChunks:
    """OpenAI chunks in, Anthropic events (framed bytes) out, for one message."""

    def __init__(self, message_id: str, model: str, input_tokens: int) -> None:
        self._id = message_id
        self._model = model
        self._input_tokens = input_tokens
        self._started = False
        self._block: str | None = None  # "text" or "tool_use" while a block is open
        self._index = -1
        self._stop_reason = "end_turn"

    def chunk(self, chunk: Chunk) -> bytes:
        out = self._start()
        choices = chunk.get("choices")
        first = choices[0] if isinstance(choices, list) and choices else None
        if not isinstance(first, dict):
            return out
        delta = first.get("delta") or {}
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self._block != "text":
                out += self._open({"type": "text", "text": ""}, "text")
            out += self._delta({"type": "text_delta", "text": text})
        for call in delta.get("tool_calls") or ():
            if call.get("id"):
                block = tool_use_block({**call, "function": {"name": _name(call)}})
                out += self._open(block, "tool_use")
            arguments = (call.get("function") or {}).get("arguments")
            if arguments and self._block == "tool_use":
                out += self._delta({"type": "input_json_delta", "partial_json": arguments})
        if first.get("finish_reason"):
            self._stop_reason = STOP_REASONS.get(first["finish_reason"], "end_turn")
        return out

    def end(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        out = self._start() + self._close()
        out += sse_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": self._stop_reason, "stop_sequence": None},
                "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens},
            },
        )
        return out + sse_event("message_stop", {"type": "message_stop"})

    @staticmethod
    def error(kind: str, message: str) -> bytes:
        return sse_event("error", {"type": "error", "error": {"type": kind, "message": message}})

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._input_tokens, "output_tokens": 0},
        }
        return sse_event("message_start", {"type": "message_start", "message": message})

    def _open(self, block: dict[str, Any], kind: str) -> bytes:
        out = self._close()
        self._index += 1
        self._block = kind
        return out + sse_event(
            "content_block_start",
            {"type": "content_block_start", "index": self._index, "content_block": block},
        )

    def _close(self) -> bytes:
        if self._block is None:
            return b""
        self._block = None
        return sse_event("content_block_stop", {"type": "content_block_stop", "index": self._index})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return sse_event(
            "content_block_delta",
            {"type": "content_block_delta", "index": self._index, "delta": delta},
        )


def _name(call: dict[str, Any]) -> Any:
    return (call.get("function") or {}).get("name")
