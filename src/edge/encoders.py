"""Stream encoders: each streamed answer framed for the client's dialect.

An encoder turns the upstream's events into the bytes the client reads
(``pipeline.streaming.Encoder``). The upstream's events either pass through
(the client speaks the provider's dialect) or go through the translator of
the pair, whose events are framed here:

- ``ChatEncoder``: OpenAI's chat chunks, ``data: <chunk>`` then ``[DONE]``;
  the usage chunk only when the client asked for it (the gateway always asks
  the upstream), with ``cost_usd`` when the model has a price. Passed
  through, a chunk goes as the provider sent its data, with the model it
  names replaced by the alias (and its ``"usage": null`` taken out when the
  client did not ask for usage), edited on the bytes; only a chunk that
  cannot be edited so (the usage chunk, an unusual spelling) is
  re-serialised.
- ``EventEncoder``: named events (``event: <type>`` then ``data: <json>``),
  Anthropic's Messages stream and the Responses API's. Passed through, each
  event goes as the provider sent its data, the model it names replaced by
  the alias the client asked for.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from ..config import PriceConfig
from ..pipeline.cost import usage_cost
from ..providers import Event, Usage
from ..providers.operations import CHAT, Operation, with_model
from ..translate import StreamTranslator

_DONE = b"data: [DONE]\n\n"
_ABSENT = object()
_USAGE_KEY = b'"usage"'
_NULL_USAGE = b'"usage":null'
_MODEL_KEY = b'"model"'

# Why a stream ended early, as Anthropic's error type.
_ANTHROPIC_KINDS = {"upstream_error": "api_error", "service_unavailable": "overloaded_error"}


class ChatEncoder:
    """OpenAI's framing: ``data: <chunk>`` events, ``[DONE]``, usage only when asked for.

    ``price`` is the answering model's: the usage chunk then carries ``cost_usd``.
    """

    def __init__(
        self,
        include_usage: bool,
        model: str,
        request_id: str,
        price: PriceConfig | None,
        translator: StreamTranslator | None,
    ) -> None:
        self._include_usage = include_usage
        self._model = model
        self._model_member = b'"model":' + orjson.dumps(model)
        self._upstream_model = ""
        self._upstream_member = b""
        self._chunk_id, self._created = "chatcmpl-" + request_id, int(time.time())
        self._price = price
        self._translator = translator

    def event(self, event: Event) -> bytes:
        parsed = event.json
        if parsed is None:
            return b""
        if self._translator is not None:
            return b"".join(self._chunk(chunk) for chunk in self._translator.feed(parsed))
        if event.data and b"\n" not in event.data:
            passed = self._passed(event.data, parsed)
            if passed is not None:
                return passed
        return self._chunk(parsed)

    def _passed(self, data: bytes, chunk: dict[str, Any]) -> bytes | None:
        """``data`` as the client gets it, edited on the bytes; ``None``: re-serialise."""
        usage = chunk.get("usage", _ABSENT)
        if (
            usage is not None
            and usage is not _ABSENT
            and (not self._include_usage or self._price is not None)
        ):
            return None  # a usage the client did not ask for, or one to price
        self._chunk_id = chunk.get("id", self._chunk_id)
        self._created = chunk.get("created", self._created)
        if not chunk.get("choices") and not self._include_usage:
            return b""
        if usage is None and not self._include_usage:
            edited = _without_null_usage(data)
            if edited is None:
                return None
            data = edited
        model = chunk.get("model")
        if model != self._model:
            if not isinstance(model, str):
                return None
            if model != self._upstream_model:  # the same in every chunk: prepared once
                self._upstream_model = model
                self._upstream_member = b'"model":' + orjson.dumps(model)
            edited = _replaced(data, _MODEL_KEY, self._upstream_member, self._model_member)
            if edited is None:
                edited = with_model(data, model, self._model)  # spelled otherwise
                if edited is None:
                    return None
            data = edited
        return b"data: " + data + b"\n\n"

    def _chunk(self, chunk: dict[str, Any]) -> bytes:
        chunk["model"] = self._model
        if not self._include_usage:
            chunk.pop("usage", None)  # only the gateway asked for it; OpenAI omits it then
        elif self._price is not None:
            usage = CHAT.usage(chunk)
            if usage is not None:
                chunk["usage"]["cost_usd"] = usage_cost(self._price, usage)
        self._chunk_id = chunk.get("id", self._chunk_id)
        self._created = chunk.get("created", self._created)
        if chunk.get("choices") or self._include_usage:  # the usage-only chunk only when asked
            return b"data: " + orjson.dumps(chunk) + b"\n\n"
        return b""

    def end(self, usage: Usage, reported: bool) -> bytes:
        closing = b""
        if self._translator is not None:
            closing = b"".join(self._chunk(chunk) for chunk in self._translator.end(usage))
        if self._include_usage and not reported:
            usage_chunk: dict[str, Any] = {
                "id": self._chunk_id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._model,
                "choices": [],
                "usage": usage.as_dict(),
            }
            if self._price is not None:
                usage_chunk["usage"]["cost_usd"] = usage_cost(self._price, usage)
            return closing + b"data: " + orjson.dumps(usage_chunk) + b"\n\n" + _DONE
        return closing + _DONE

    def failed(
        self, message: str, kind: str = "upstream_error", event: Event | None = None
    ) -> bytes:
        error = {"error": {"type": kind, "message": message, "param": None, "code": kind}}
        return b"data: " + orjson.dumps(error) + b"\n\n"


class EventEncoder:
    """Named events (Anthropic's Messages, the Responses API): passed through or translated.

    ``op`` is the client's operation; ``translator`` ``None`` when the
    upstream speaks it too.
    """

    def __init__(self, op: Operation, model: str, translator: StreamTranslator | None) -> None:
        self._op = op
        self._model = model
        self._translator = translator
        self._sequence = 0

    def event(self, event: Event) -> bytes:
        parsed = event.json
        if self._translator is not None:
            return b"".join(_framed(out) for out in self._translator.feed(parsed or {}))
        if parsed is None:
            return b""
        self._sequence = parsed.get("sequence_number", self._sequence)
        data = event.data
        named = self._op.event_model(parsed)
        if named is not None and named.get("model") != self._model:
            old = named.get("model")
            replaced = with_model(data, old, self._model) if isinstance(old, str) else None
            named["model"] = self._model
            data = replaced if replaced is not None else orjson.dumps(parsed)
        name = event.name or str(parsed.get("type", "")).encode()
        return b"event: " + name + b"\ndata: " + data + b"\n\n"

    def end(self, usage: Usage, reported: bool) -> bytes:
        if self._translator is None:
            return b""  # the provider's own last events have gone as they came
        return b"".join(_framed(out) for out in self._translator.end(usage))

    def failed(
        self, message: str, kind: str = "upstream_error", event: Event | None = None
    ) -> bytes:
        if event is not None and self._translator is None and event.json is not None:
            return self.event(event)  # the provider's own error event, as it sent it
        if self._op.dialect == "anthropic":
            error = {"type": _ANTHROPIC_KINDS.get(kind, "api_error"), "message": message}
            return _framed({"type": "error", "error": error})
        return _framed(
            {
                "type": "error",
                "code": kind,
                "message": message,
                "param": None,
                "sequence_number": self._sequence + 1,
            }
        )


def _framed(event: dict[str, Any]) -> bytes:
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


# The chunk edits below work on the bytes of an object whose members the caller has
# parsed. A quote inside a JSON string is escaped, so a key's text found once in the
# bytes is that member; anything less certain (the text found twice, spaces around the
# colon) gives ``None``, and the caller re-serialises the chunk.


def _without_null_usage(data: bytes) -> bytes | None:
    """``data`` without its ``"usage":null`` member (and a comma beside it)."""
    at = data.find(_NULL_USAGE)
    if at < 0 or data.count(_USAGE_KEY) != 1:
        return None
    end = at + len(_NULL_USAGE)
    if data[at - 1 : at] == b",":
        return data[: at - 1] + data[end:]
    if data[end : end + 1] == b",":
        return data[:at] + data[end + 1 :]
    return None


def _replaced(data: bytes, key: bytes, member: bytes, replacement: bytes) -> bytes | None:
    """``data`` with ``member`` (the ``key`` and its value) replaced by ``replacement``."""
    at = data.find(member)
    if at < 0 or data.count(key) != 1:
        return None
    return data[:at] + replacement + data[at + len(member) :]
