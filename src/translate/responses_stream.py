"""Chat completion chunks in, the Responses API's stream events out (as objects).

The events OpenAI's own stream sends, in its order: ``response.created`` and
``response.in_progress``; per output item ``response.output_item.added``,
then for a message ``response.content_part.added`` and
``response.output_text.delta``s, for a function call
``response.function_call_arguments.delta``s; each item closed by its
``...done`` events (``output_text.done``, ``content_part.done``,
``function_call_arguments.done``, ``output_item.done``) when the next one
opens or the stream ends; last ``response.completed`` (or
``response.incomplete``) with the whole response and its usage. Every event
carries its ``sequence_number``.
"""

from __future__ import annotations

from typing import Any

from ..providers.base import Usage
from .base import Context, first_delta
from .responses_objects import call_item, message_item, response_id, response_object, status_of

Chunk = dict[str, Any]


class _Item:
    """One output item while it streams: a message's text, or a function call's arguments."""

    def __init__(self, index: int, kind: str, item_id: str, call_id: str = "", name: str = ""):
        self.index = index
        self.kind = kind
        self.id = item_id
        self.call_id = call_id
        self.name = name
        self.parts: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def item(self, status: str) -> dict[str, Any]:
        if self.kind == "message":
            return message_item(self.id, self.text, status)
        return call_item(self.call_id, self.name, self.text, status)


class EventsFromChunks:
    """One response's events, from the chunks of one chat completion stream."""

    def __init__(self, context: Context) -> None:
        self._context = context
        self._sequence = 0
        self._started = False
        self._items: list[_Item] = []
        self._open: _Item | None = None
        self._calls: dict[int, _Item] = {}  # the chunk's tool call index -> its item
        self._finish: str | None = None
        self._message_id = "msg_" + response_id(context)[5:]

    def feed(self, chunk: Chunk) -> list[dict[str, Any]]:
        out = self._start()
        found = first_delta(chunk)
        if found is None:
            return out
        first, delta = found
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self._open is None or self._open.kind != "message":
                out += self._begin(_Item(len(self._items), "message", self._message_id))
                out.append(self._event("response.content_part.added", self._part(self._open, "")))
            item = self._open
            assert item is not None
            item.parts.append(text)
            out.append(self._text_delta(item, text))
        for call in delta.get("tool_calls") or ():
            out += self._call(call)
        if first.get("finish_reason"):
            self._finish = first["finish_reason"]
        return out

    def end(self, usage: Usage) -> list[dict[str, Any]]:
        out = self._start() + self._close()
        status = status_of(self._finish)
        output = [item.item("completed") for item in self._items]
        response = response_object(self._context, output, status, usage, self._finish)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        out.append(self._event(kind, {"response": response}))
        return out

    def _call(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        index = call.get("index", 0)
        function = call.get("function") or {}
        if call.get("id"):
            call_id = str(call["id"])
            item = _Item(
                len(self._items),
                "function_call",
                "fc_" + call_id.removeprefix("call_"),
                call_id,
                str(function.get("name") or ""),
            )
            self._calls[index] = item
            out += self._begin(item)
        streaming = self._calls.get(index)
        arguments = function.get("arguments")
        if streaming is not None and isinstance(arguments, str) and arguments:
            streaming.parts.append(arguments)
            delta = {
                "item_id": streaming.id,
                "output_index": streaming.index,
                "delta": arguments,
            }
            out.append(self._event("response.function_call_arguments.delta", delta))
        return out

    def _start(self) -> list[dict[str, Any]]:
        if self._started:
            return []
        self._started = True
        response = response_object(self._context, [], "in_progress", None)
        return [
            self._event("response.created", {"response": response}),
            self._event("response.in_progress", {"response": response}),
        ]

    def _begin(self, item: _Item) -> list[dict[str, Any]]:
        out = self._close()
        self._items.append(item)
        self._open = item
        added = {"output_index": item.index, "item": item.item("in_progress")}
        out.append(self._event("response.output_item.added", added))
        return out

    def _close(self) -> list[dict[str, Any]]:
        current, self._open = self._open, None
        if current is None:
            return []
        item = current
        out = []
        if item.kind == "message":
            done = {
                "item_id": item.id,
                "output_index": item.index,
                "content_index": 0,
                "text": item.text,
                "logprobs": [],
            }
            out.append(self._event("response.output_text.done", done))
            out.append(self._event("response.content_part.done", self._part(item, item.text)))
        else:
            done = {
                "item_id": item.id,
                "output_index": item.index,
                "name": item.name,
                "arguments": item.text,
            }
            out.append(self._event("response.function_call_arguments.done", done))
        finished = {"output_index": item.index, "item": item.item("completed")}
        out.append(self._event("response.output_item.done", finished))
        return out

    def _part(self, item: _Item | None, text: str) -> dict[str, Any]:
        assert item is not None
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        return {"item_id": item.id, "output_index": item.index, "content_index": 0, "part": part}

    def _text_delta(self, item: _Item, text: str) -> dict[str, Any]:
        delta = {
            "item_id": item.id,
            "output_index": item.index,
            "content_index": 0,
            "delta": text,
            "logprobs": [],
        }
        return self._event("response.output_text.delta", delta)

    def _event(self, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event
