"""Anthropic Messages in, chat completions upstream: the ``anthropic_openai`` translator.

The request: ``system`` becomes a system message, ``tool_use`` and
``tool_result`` blocks become tool calls and tool messages, image blocks
become image parts, ``output_config`` with a JSON schema becomes
``response_format``; thinking blocks of earlier turns are left out (no other
provider can take them back) and a field or block with no chat equivalent
raises ``UnsupportedField`` (400) naming it. The answer and the stream come
back as an Anthropic ``message`` and its events (as objects; the edge frames
them), with OpenAI's cached tokens as ``cache_read_input_tokens``.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import UnsupportedField
from ..providers import Provider
from ..providers.base import Usage
from ..providers.operations import CHAT, MESSAGES, Operation
from .base import Context, first_delta, first_reply

Chunk = dict[str, Any]

_INBOUND_FIELDS = frozenset(
    {
        "model", "messages", "system", "max_tokens", "stop_sequences", "temperature",
        "top_p", "top_k", "tools", "tool_choice", "metadata", "stream", "service_tier",
        "output_config",
    }
)  # fmt: skip


def from_anthropic(body: dict[str, Any], who: str) -> dict[str, Any]:
    """A validated Anthropic Messages body as an OpenAI chat body (``model`` kept).

    Only the fields each block is known by are read: hints such as a block's
    ``cache_control`` are dropped (the chat provider caches by itself).
    ``who`` names the provider in refusals.
    """
    for field in body:
        if field not in _INBOUND_FIELDS:
            raise UnsupportedField(who, field, "it has no chat completions equivalent")
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": _blocks_text(system, "system", who)})
    for index, message in enumerate(body["messages"]):
        messages.extend(_openai_messages(message, f"messages.{index}", who))
    request: dict[str, Any] = {
        "model": body["model"],
        "messages": messages,
        "max_tokens": body["max_tokens"],
    }
    for field in ("temperature", "top_p", "top_k"):
        if body.get(field) is not None:
            request[field] = body[field]
    if body.get("stop_sequences"):
        request["stop"] = body["stop_sequences"]
    if body.get("tools"):
        request["tools"] = [_openai_tool(t, f"tools.{i}", who) for i, t in enumerate(body["tools"])]
    if body.get("tool_choice"):
        request.update(_openai_tool_choice(body["tool_choice"], who))
    user = (body.get("metadata") or {}).get("user_id")
    if isinstance(user, str):
        request["user"] = user
    output = body.get("output_config")
    if output is not None:
        request.update(_response_format(output, who))
    if body.get("stream"):
        request["stream"] = True
    return request


def _response_format(output: Any, who: str) -> dict[str, Any]:
    """``output_config`` (structured outputs) as ``response_format``."""
    if not isinstance(output, dict):
        raise UnsupportedField(who, "output_config", "it must be an object")
    for key in output:
        if key != "format":
            raise UnsupportedField(who, f"output_config.{key}", "it has no chat equivalent")
    form = output.get("format")
    if form is None:
        return {}
    if not isinstance(form, dict) or form.get("type") != "json_schema":
        raise UnsupportedField(who, "output_config.format.type", "only json_schema maps")
    schema = {"name": "output", "schema": form.get("schema"), "strict": True}
    return {"response_format": {"type": "json_schema", "json_schema": schema}}


def _blocks_text(content: Any, where: str, who: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for i, block in enumerate(content):
        if block.get("type") != "text":
            raise UnsupportedField(who, f"{where}.{i}.type", "only text is allowed here")
        texts.append(block.get("text", ""))
    return "\n\n".join(texts)


def _openai_messages(message: dict[str, Any], where: str, who: str) -> list[dict[str, Any]]:
    role, content = message["role"], message["content"]
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image" and role == "user":
            parts.append(_openai_image(block, f"{where}.content.{i}", who))
        elif kind == "tool_use" and role == "assistant":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
        elif kind == "tool_result" and role == "user":
            results.append(_openai_tool_result(block, f"{where}.content.{i}", who))
        elif kind in {"thinking", "redacted_thinking"}:
            continue  # the model's own reasoning: no other provider can take it back
        else:
            raise UnsupportedField(
                who, f"{where}.content.{i}.type", f"block {kind!r} cannot be translated"
            )
    # Tool results answer the previous assistant turn, so they come before the user's text.
    translated = list(results)
    if role == "assistant":
        text = "".join(part["text"] for part in parts)
        reply: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            reply["tool_calls"] = calls
        translated.append(reply)
    elif parts:
        translated.append({"role": "user", "content": parts})
    return translated


def _openai_image(block: dict[str, Any], where: str, who: str) -> dict[str, Any]:
    source = block.get("source") or {}
    url: Any
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url":
        url = source.get("url")
    else:
        raise UnsupportedField(who, f"{where}.source.type", "use a base64 or url image")
    return {"type": "image_url", "image_url": {"url": url}}


def _openai_tool_result(block: dict[str, Any], where: str, who: str) -> dict[str, Any]:
    content = block.get("content")
    text = _blocks_text(content, f"{where}.content", who) if content else ""
    if block.get("is_error"):
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text}


def _openai_tool(tool: dict[str, Any], where: str, who: str) -> dict[str, Any]:
    if "input_schema" not in tool:
        raise UnsupportedField(who, f"{where}.type", "only custom tools can be translated")
    function: dict[str, Any] = {"name": tool.get("name"), "parameters": tool["input_schema"]}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _openai_tool_choice(choice: dict[str, Any], who: str) -> dict[str, Any]:
    kind = choice.get("type")
    translated: dict[str, Any] = {}
    if kind == "tool":
        translated["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif kind in {"auto", "any", "none"}:
        translated["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    else:
        raise UnsupportedField(who, "tool_choice.type", f"{kind!r} is not a tool choice")
    if choice.get("disable_parallel_tool_use"):
        translated["parallel_tool_calls"] = False
    return translated


# OpenAI finish_reason -> Anthropic stop_reason
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def to_anthropic_message(answer: dict[str, Any], usage: Usage, context: Context) -> dict[str, Any]:
    """A ``chat.completion`` as an Anthropic ``message`` with ``usage``."""
    first, reply, text = first_reply(answer)
    content: list[dict[str, Any]] = []
    if text:
        content.append({"type": "text", "text": text})
    for call in reply.get("tool_calls") or ():
        content.append(tool_use_block(call))
    return {
        "id": message_id(context),
        "type": "message",
        "role": "assistant",
        "model": context.alias,
        "content": content,
        "stop_reason": STOP_REASONS.get(first.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": anthropic_usage(usage),
    }


def message_id(context: Context) -> str:
    return "msg_" + context.request_id.removeprefix("gw-")


def anthropic_usage(usage: Usage) -> dict[str, int]:
    """Usage as Anthropic counts it: ``input_tokens`` excludes the cache reads and writes."""
    counted = {
        "input_tokens": usage.uncached_prompt_tokens,
        "output_tokens": usage.completion_tokens,
    }
    if usage.cache_read_tokens:
        counted["cache_read_input_tokens"] = usage.cache_read_tokens
    if usage.cache_write_tokens:
        counted["cache_creation_input_tokens"] = usage.cache_write_tokens
    return counted


def tool_use_block(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    try:
        arguments = orjson.loads(function.get("arguments") or "{}")
    except orjson.JSONDecodeError:
        arguments = {}
    return {
        "type": "tool_use",
        "id": call.get("id"),
        "name": function.get("name"),
        "input": arguments if isinstance(arguments, dict) else {},
    }


class EventsFromChunks:
    """OpenAI chunks in, Anthropic events (objects) out, for one message."""

    def __init__(self, context: Context) -> None:
        self._id = message_id(context)
        self._model = context.alias
        self._input_tokens = context.prompt_estimate
        self._started = False
        self._block: str | None = None  # "text" or "tool_use" while a block is open
        self._index = -1
        self._stop_reason = "end_turn"

    def feed(self, chunk: Chunk) -> list[dict[str, Any]]:
        out = self._start()
        found = first_delta(chunk)
        if found is None:
            return out
        first, delta = found
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self._block != "text":
                out += self._open({"type": "text", "text": ""}, "text")
            out.append(self._delta({"type": "text_delta", "text": text}))
        for call in delta.get("tool_calls") or ():
            if call.get("id"):
                block = tool_use_block({**call, "function": {"name": _name(call)}})
                out += self._open(block, "tool_use")
            arguments = (call.get("function") or {}).get("arguments")
            if arguments and self._block == "tool_use":
                out.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
        if first.get("finish_reason"):
            self._stop_reason = STOP_REASONS.get(first["finish_reason"], "end_turn")
        return out

    def end(self, usage: Usage) -> list[dict[str, Any]]:
        out = self._start() + self._close()
        out.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": self._stop_reason, "stop_sequence": None},
                "usage": anthropic_usage(usage),
            }
        )
        out.append({"type": "message_stop"})
        return out

    def _start(self) -> list[dict[str, Any]]:
        if self._started:
            return []
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
        return [{"type": "message_start", "message": message}]

    def _open(self, block: dict[str, Any], kind: str) -> list[dict[str, Any]]:
        out = self._close()
        self._index += 1
        self._block = kind
        out.append({"type": "content_block_start", "index": self._index, "content_block": block})
        return out

    def _close(self) -> list[dict[str, Any]]:
        if self._block is None:
            return []
        self._block = None
        return [{"type": "content_block_stop", "index": self._index}]

    def _delta(self, delta: dict[str, Any]) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": self._index, "delta": delta}


def _name(call: dict[str, Any]) -> Any:
    return (call.get("function") or {}).get("name")


class _MessagesToChat:
    name = "anthropic_openai"
    inbound: Operation = MESSAGES
    outbound: Operation = CHAT

    def request(self, body: dict[str, Any], model: str, provider: Provider) -> dict[str, Any]:
        request = from_anthropic(body, provider.who)
        request["model"] = model
        return request

    def answer(self, answer: dict[str, Any], usage: Usage, context: Context) -> dict[str, Any]:
        return to_anthropic_message(answer, usage, context)

    def stream(self, context: Context) -> EventsFromChunks:
        return EventsFromChunks(context)


MESSAGES_TO_CHAT = _MessagesToChat()
