"""The API operations the gateway carries, as data: where each goes and how to read it.

An ``Operation`` is one provider API call shape: OpenAI's chat completions,
embeddings and Responses, Anthropic's Messages and its token count. A request
travels in its inbound operation; each attempt passes it through to a
provider that speaks that operation, or translates it (``translate``) into
one the provider speaks. Either way the pipeline reads what it needs from the
answer through the operation of the upstream call, never by rewriting it:

- ``usage`` / ``stream_usage``: token usage in the gateway's one shape
  (``Usage``: input with its cache reads and writes, output with its
  reasoning), from a whole answer or from the events of a stream;
- ``output_text`` / ``stream_text``: the answer's text (policies' response
  phase, the approximation when an upstream reports no usage);
- ``stream_end`` / ``stream_error``: the event that completes a stream, and
  an event that reports a failure;
- ``set_model``: the model an answer (or stream event) names, which the
  client sees as the alias it asked for;
- ``complaint``: what makes an answer unusable (the attempt fails, the next
  target is tried); ``stream_request``: the body of a streamed call;
  ``finish``: what the gateway adds to an answer it passes on (the usage it
  approximated where the upstream reported none, the chat fields a
  client's SDK needs).
"""

from __future__ import annotations

import functools
import re
import time
from typing import Any

import orjson

from .base import Usage


def _int(value: object) -> int:
    return value if type(value) is int else 0


def _detail(usage: dict[str, Any], field: str, key: str) -> int:
    details = usage.get(field)
    return _int(details.get(key)) if isinstance(details, dict) else 0


class Operation:
    """One API operation; ``path`` is where it goes under a provider's ``base_url``."""

    name = ""
    dialect = "openai"
    path = ""
    last_event = "its last event"  # what completes a stream, in words

    def usage(self, answer: dict[str, Any]) -> Usage | None:
        """The usage a whole answer reports; ``None`` when it reports none."""
        return None

    def stream_usage(self, event: dict[str, Any], usage: Usage | None) -> Usage | None:
        """The stream's usage once ``event`` is seen (``usage``: what was known before)."""
        return usage

    def output_text(self, answer: dict[str, Any]) -> str:
        return ""

    def stream_text(self, event: dict[str, Any]) -> str | None:
        return None

    def stream_end(self, data: bytes, event: dict[str, Any] | None) -> bool:
        """Whether this event completes the stream."""
        return False

    def stream_error(self, event: dict[str, Any]) -> tuple[str, str] | None:
        """``(type, message)`` when the event reports a failure."""
        return None

    def set_model(self, answer: dict[str, Any], model: str) -> None:
        answer["model"] = model

    def complaint(self, answer: dict[str, Any]) -> str | None:
        """Why a 200 answer cannot be used (``None``: it can)."""
        return None

    def stream_request(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The body of a streamed call, when it must differ from ``body``."""
        return None if body.get("stream") is True else {**body, "stream": True}

    def finish(self, answer: dict[str, Any], usage: Usage, reported: bool, request_id: str) -> bool:
        """Complete an answer for the client; whether anything (other than the model)
        was changed."""
        return False

    def event_model(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The object of a stream event that names the model, if this event has one."""
        return None

    def __repr__(self) -> str:
        return f"<operation {self.name}>"


class Chat(Operation):
    """OpenAI's ``POST /chat/completions``."""

    name, path = "chat", "/chat/completions"
    last_event = "[DONE]"

    def usage(self, answer: dict[str, Any]) -> Usage | None:
        usage = answer.get("usage")
        if not isinstance(usage, dict):
            return None
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if type(prompt) is not int or type(completion) is not int:
            return None
        return Usage(
            prompt,
            completion,
            cache_read_tokens=_detail(usage, "prompt_tokens_details", "cached_tokens"),
            reasoning_tokens=_detail(usage, "completion_tokens_details", "reasoning_tokens"),
        )

    def stream_usage(self, event: dict[str, Any], usage: Usage | None) -> Usage | None:
        return self.usage(event) or usage

    def complaint(self, answer: dict[str, Any]) -> str | None:
        choices = answer.get("choices")
        if not isinstance(choices, list) or not all(
            isinstance(choice, dict) and isinstance(choice.get("message"), dict)
            for choice in choices
        ):
            return "answered without a 'choices' list of messages"
        return None

    def stream_request(self, body: dict[str, Any]) -> dict[str, Any] | None:
        options = body.get("stream_options")
        if (
            body.get("stream") is True
            and isinstance(options, dict)
            and options.get("include_usage") is True
        ):
            return None
        # The gateway counts tokens even when the client did not ask.
        options = {**options, "include_usage": True} if isinstance(options, dict) else None
        return {**body, "stream": True, "stream_options": options or {"include_usage": True}}

    def finish(self, answer: dict[str, Any], usage: Usage, reported: bool, request_id: str) -> bool:
        changed = not reported
        if changed:
            answer["usage"] = usage.as_dict()
        for key, value in (
            ("object", "chat.completion"),
            ("created", int(time.time())),
            ("id", "chatcmpl-" + request_id),
        ):
            if key not in answer:
                answer[key] = value
                changed = True
        return changed

    def output_text(self, answer: dict[str, Any]) -> str:
        texts = []
        for choice in answer.get("choices") or ():
            message = choice.get("message") if isinstance(choice, dict) else None
            if isinstance(message, dict):
                texts.append(content_text(message.get("content")))
        return " ".join(texts)

    def stream_text(self, event: dict[str, Any]) -> str | None:
        choices = event.get("choices")
        if not isinstance(choices, list) or not choices:
            return None
        delta = choices[0].get("delta") if isinstance(choices[0], dict) else None
        text = delta.get("content") if isinstance(delta, dict) else None
        return text if isinstance(text, str) else None

    def stream_end(self, data: bytes, event: dict[str, Any] | None) -> bool:
        return data == b"[DONE]"

    def event_model(self, event: dict[str, Any]) -> dict[str, Any] | None:
        return event


class Embeddings(Operation):
    """OpenAI's ``POST /embeddings``."""

    name, path = "embeddings", "/embeddings"

    def usage(self, answer: dict[str, Any]) -> Usage | None:
        usage = answer.get("usage")
        prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        return Usage(prompt, 0) if type(prompt) is int else None

    def complaint(self, answer: dict[str, Any]) -> str | None:
        return None if isinstance(answer.get("data"), list) else "answered without a 'data' list"

    def finish(self, answer: dict[str, Any], usage: Usage, reported: bool, request_id: str) -> bool:
        changed = not reported or "object" not in answer
        if not reported:
            answer["usage"] = {
                "prompt_tokens": usage.prompt_tokens,
                "total_tokens": usage.total_tokens,
            }
        answer.setdefault("object", "list")
        return changed


class Responses(Operation):
    """OpenAI's ``POST /responses``."""

    name, path = "responses", "/responses"
    last_event = "response.completed"
    _ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})

    def usage(self, answer: dict[str, Any]) -> Usage | None:
        usage = answer.get("usage")
        if not isinstance(usage, dict):
            return None
        prompt, output = usage.get("input_tokens"), usage.get("output_tokens")
        if type(prompt) is not int or type(output) is not int:
            return None
        return Usage(
            prompt,
            output,
            cache_read_tokens=_detail(usage, "input_tokens_details", "cached_tokens"),
            cache_write_tokens=_detail(usage, "input_tokens_details", "cache_write_tokens"),
            reasoning_tokens=_detail(usage, "output_tokens_details", "reasoning_tokens"),
        )

    def stream_usage(self, event: dict[str, Any], usage: Usage | None) -> Usage | None:
        if event.get("type") in self._ENDS and isinstance(event.get("response"), dict):
            return self.usage(event["response"]) or usage
        return usage

    def complaint(self, answer: dict[str, Any]) -> str | None:
        return (
            None if isinstance(answer.get("output"), list) else "answered without an 'output' list"
        )

    def output_text(self, answer: dict[str, Any]) -> str:
        texts = []
        for item in answer.get("output") or ():
            if isinstance(item, dict) and item.get("type") == "message":
                for part in item.get("content") or ():
                    if isinstance(part, dict) and part.get("type") == "output_text":
                        texts.append(str(part.get("text", "")))
        return "".join(texts)

    def stream_text(self, event: dict[str, Any]) -> str | None:
        if event.get("type") == "response.output_text.delta":
            delta = event.get("delta")
            return delta if isinstance(delta, str) else None
        return None

    def stream_end(self, data: bytes, event: dict[str, Any] | None) -> bool:
        return event is not None and event.get("type") in self._ENDS

    def stream_error(self, event: dict[str, Any]) -> tuple[str, str] | None:
        if event.get("type") != "error":
            return None
        return str(event.get("code") or "api_error"), str(event.get("message", ""))

    def event_model(self, event: dict[str, Any]) -> dict[str, Any] | None:
        response = event.get("response")
        return response if isinstance(response, dict) and "model" in response else None


class Messages(Operation):
    """Anthropic's ``POST /messages``."""

    name, dialect, path = "messages", "anthropic", "/messages"
    last_event = "message_stop"

    def usage(self, answer: dict[str, Any]) -> Usage | None:
        return anthropic_usage(answer.get("usage"))

    def stream_usage(self, event: dict[str, Any], usage: Usage | None) -> Usage | None:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            return anthropic_usage(message.get("usage")) if isinstance(message, dict) else usage
        if kind == "message_delta" and isinstance(event.get("usage"), dict):
            # Counts in message_delta are cumulative; input counts may be absent from it.
            fields = event["usage"]
            known = usage or Usage(0, 0)
            fresh = fields.get("input_tokens")
            read = fields.get("cache_read_input_tokens")
            write = fields.get("cache_creation_input_tokens")
            if type(fresh) is int or type(read) is int or type(write) is int:
                read_n = read if type(read) is int else known.cache_read_tokens
                write_n = write if type(write) is int else known.cache_write_tokens
                fresh_n = fresh if type(fresh) is int else known.uncached_prompt_tokens
                known = Usage(fresh_n + read_n + write_n, known.completion_tokens, read_n, write_n)
            output = fields.get("output_tokens")
            if type(output) is int:
                known = Usage(
                    known.prompt_tokens, output, known.cache_read_tokens, known.cache_write_tokens
                )
            return known
        return usage

    def complaint(self, answer: dict[str, Any]) -> str | None:
        if answer.get("type") != "message" or not isinstance(answer.get("content"), list):
            return "answered without a message"
        return None

    def output_text(self, answer: dict[str, Any]) -> str:
        return "".join(
            str(block.get("text", ""))
            for block in answer.get("content") or ()
            if isinstance(block, dict) and block.get("type") == "text"
        )

    def stream_text(self, event: dict[str, Any]) -> str | None:
        if event.get("type") != "content_block_delta":
            return None
        delta = event.get("delta")
        if isinstance(delta, dict) and delta.get("type") == "text_delta":
            text = delta.get("text")
            return text if isinstance(text, str) else None
        return None

    def stream_end(self, data: bytes, event: dict[str, Any] | None) -> bool:
        return event is not None and event.get("type") == "message_stop"

    def stream_error(self, event: dict[str, Any]) -> tuple[str, str] | None:
        if event.get("type") != "error":
            return None
        error = event.get("error")
        error = error if isinstance(error, dict) else {}
        return str(error.get("type") or "api_error"), str(error.get("message", ""))

    def event_model(self, event: dict[str, Any]) -> dict[str, Any] | None:
        message = event.get("message") if event.get("type") == "message_start" else None
        return message if isinstance(message, dict) else None


class CountTokens(Operation):
    """Anthropic's ``POST /messages/count_tokens``: no completion, nothing to charge."""

    name, dialect, path = "count_tokens", "anthropic", "/messages/count_tokens"

    def set_model(self, answer: dict[str, Any], model: str) -> None:
        return None  # the answer names no model

    def usage(self, answer: dict[str, Any]) -> Usage | None:
        return Usage(0, 0)  # counting is free: nothing to reconcile or charge

    def complaint(self, answer: dict[str, Any]) -> str | None:
        ok = type(answer.get("input_tokens")) is int
        return None if ok else "answered without 'input_tokens'"


def anthropic_usage(usage: object) -> Usage | None:
    """Anthropic's usage: the input is the fresh tokens plus the cache reads and writes."""
    if not isinstance(usage, dict):
        return None
    fresh, output = usage.get("input_tokens"), usage.get("output_tokens")
    if type(fresh) is not int or type(output) is not int:
        return None
    read = _int(usage.get("cache_read_input_tokens"))
    write = _int(usage.get("cache_creation_input_tokens"))
    return Usage(fresh + read + write, output, read, write)


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


CHAT = Chat()
EMBEDDINGS = Embeddings()
RESPONSES = Responses()
MESSAGES = Messages()
COUNT_TOKENS = CountTokens()

_MODEL_KEY = rb'"model"\s*:\s*'


@functools.lru_cache(maxsize=256)
def model_pattern(model: str) -> re.Pattern[bytes]:
    """The member ``"model": "<model>"`` in JSON bytes, however spaced."""
    return re.compile(_MODEL_KEY + re.escape(orjson.dumps(model)))


def with_model(raw: bytes, old: str, new: str) -> bytes | None:
    """``raw`` (a JSON object) with its ``"model": old`` replaced by ``new``, on the bytes.

    Only when the pair occurs exactly once: inside a JSON string a quote is
    escaped, so a single ``"model": "<old>"`` is the member the caller parsed
    (it checked that ``old`` is the object's ``model``). ``None`` when that is
    not certain (the pair repeats, or is written with escapes): re-serialise.
    """
    return replace_once(model_pattern(old), raw, b'"model":' + orjson.dumps(new))


def replace_once(pattern: re.Pattern[bytes], raw: bytes, replacement: bytes) -> bytes | None:
    """``raw`` with the one match of ``pattern`` replaced; ``None`` unless there is exactly one."""
    found = pattern.search(raw)
    if found is None or pattern.search(raw, found.end()) is not None:
        return None
    return raw[: found.start()] + replacement + raw[found.end() :]
