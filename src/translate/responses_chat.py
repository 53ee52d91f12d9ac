"""The Responses API in, chat completions upstream: the ``responses_chat`` translator.

What maps is carried: ``instructions`` and ``input`` (text, images, earlier
assistant text, ``function_call`` and ``function_call_output`` items) become
chat messages; function tools, ``tool_choice``, ``parallel_tool_calls``,
``temperature``, ``top_p``, ``max_output_tokens`` and ``text.format`` (a JSON
schema or object) their chat equivalents. Fields that change nothing here
(``store``, ``metadata``, ``include: []``, ...) are left out: the gateway
keeps no response, so nothing is stored whatever ``store`` says. Anything
else (``previous_response_id``, built-in tools, files, ``reasoning``, ...)
raises ``UnsupportedField`` naming the field.

The answer comes back as a ``response`` object, the stream as the Responses
API's events (``response.created`` ... ``response.completed``), both shaped
as OpenAI's published schemas say.
"""

from __future__ import annotations

from typing import Any

from ..errors import UnsupportedField
from ..providers import Provider
from ..providers.base import Usage
from ..providers.operations import CHAT, RESPONSES, Operation
from .base import Context, first_reply
from .responses_objects import call_item, message_item, response_id, response_object, status_of
from .responses_stream import EventsFromChunks

# Fields with nothing to carry: the value does not change the answer.
_IGNORED = frozenset(
    {"model", "stream", "stream_options", "store", "metadata", "service_tier",
     "prompt_cache_key", "prompt_cache_retention", "safety_identifier"}
)  # fmt: skip
# Fields whose value here is what a chat completion does anyway.
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "include": ([],),
    "truncation": ("disabled",),
    "background": (False,),
    "reasoning": ({},),
    "previous_response_id": (),
    "conversation": (),
    "prompt": (),
    "top_logprobs": (0,),
}
_SAME = ("temperature", "top_p", "parallel_tool_calls", "user")


def to_chat(body: dict[str, Any], model: str, who: str) -> dict[str, Any]:
    """A Responses API body as a chat completions body for ``model``."""
    request: dict[str, Any] = {"model": model}
    messages: list[dict[str, Any]] = []
    for field, value in body.items():
        if value is None or field in _IGNORED:
            continue
        if field == "instructions":
            if not isinstance(value, str):
                raise UnsupportedField(who, field, "only text instructions can be translated")
            messages.insert(0, {"role": "system", "content": value})
        elif field == "input":
            messages.extend(_input(value, who))
        elif field == "max_output_tokens":
            request["max_tokens"] = value
        elif field in _SAME:
            request[field] = value
        elif field == "tools":
            request["tools"] = [_tool(tool, f"tools.{i}", who) for i, tool in enumerate(value)]
        elif field == "tool_choice":
            request["tool_choice"] = _tool_choice(value, who)
        elif field == "text":
            request.update(_text(value, who))
        elif field not in _NEUTRAL or value not in _NEUTRAL[field]:
            raise UnsupportedField(who, field, "it has no chat completions equivalent")
    if not messages:
        raise UnsupportedField(who, "input", "there is no input to send")
    request["messages"] = messages
    return request


def _input(value: Any, who: str) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        where = f"input.{index}"
        kind = item.get("type", "message") if isinstance(item, dict) else None
        if kind == "message":
            messages.append(_message(item, where, who))
        elif kind == "function_call":
            call = {
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            elif last is not None and last["role"] == "assistant":
                last["tool_calls"] = [call]
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = (
                output if isinstance(output, str) else _parts_text(output, f"{where}.output", who)
            )
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": text})
        elif kind == "reasoning":
            continue  # a reasoning model's own summary: no chat provider takes it back
        else:
            raise UnsupportedField(
                who, f"{where}.type", f"input item {kind!r} cannot be translated"
            )
    return messages


def _message(item: dict[str, Any], where: str, who: str) -> dict[str, Any]:
    role, content = item.get("role"), item.get("content")
    if role not in {"user", "assistant", "system", "developer"}:
        raise UnsupportedField(who, f"{where}.role", f"role {role!r} cannot be translated")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if role != "user":
        return {"role": role, "content": _parts_text(content, f"{where}.content", who)}
    parts = []
    for index, part in enumerate(content or ()):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in {"input_text", "output_text"}:
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail") in {"low", "high"}:
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            field = f"{where}.content.{index}"
            raise UnsupportedField(who, f"{field}.type", f"content {kind!r} cannot be translated")
    return {"role": role, "content": parts}


def _parts_text(content: Any, where: str, who: str) -> str:
    texts = []
    for index, part in enumerate(content or ()):
        if not isinstance(part, dict) or part.get("type") not in {
            "input_text", "output_text", "text", "refusal"
        }:  # fmt: skip
            raise UnsupportedField(who, f"{where}.{index}.type", "only text is allowed here")
        texts.append(str(part.get("text") or part.get("refusal") or ""))
    return "".join(texts)


def _tool(tool: dict[str, Any], where: str, who: str) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise UnsupportedField(who, f"{where}.type", "only function tools can be translated")
    function: dict[str, Any] = {
        "name": tool.get("name"),
        "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
    }
    if tool.get("description"):
        function["description"] = tool["description"]
    if tool.get("strict") is not None:
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _tool_choice(choice: Any, who: str) -> Any:
    if choice in {"auto", "none", "required"}:
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    raise UnsupportedField(who, "tool_choice", f"{choice!r} cannot be translated")


def _text(text: Any, who: str) -> dict[str, Any]:
    form = text.get("format") if isinstance(text, dict) else None
    for key in text if isinstance(text, dict) else ():
        if key not in {"format", "verbosity"} or (key == "verbosity" and text[key] is not None):
            raise UnsupportedField(who, f"text.{key}", "it has no chat completions equivalent")
    if form is None or form.get("type") == "text":
        return {}
    if form.get("type") == "json_object":
        return {"response_format": {"type": "json_object"}}
    if form.get("type") == "json_schema":
        schema = {k: form[k] for k in ("name", "schema", "strict", "description") if k in form}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    raise UnsupportedField(who, "text.format.type", f"{form.get('type')!r} cannot be translated")


def to_response(answer: dict[str, Any], usage: Usage, context: Context) -> dict[str, Any]:
    """A ``chat.completion`` as a Responses API ``response``."""
    first, reply, text = first_reply(answer)
    output: list[dict[str, Any]] = []
    if text:
        output.append(message_item("msg_" + response_id(context)[5:], text, "completed"))
    for call in reply.get("tool_calls") or ():
        function = call.get("function") or {}
        output.append(
            call_item(
                str(call.get("id")),
                str(function.get("name")),
                str(function.get("arguments") or ""),
                "completed",
            )
        )
    finish = first.get("finish_reason")
    return response_object(context, output, status_of(finish), usage, finish)


class _ResponsesToChat:
    name = "responses_chat"
    inbound: Operation = RESPONSES
    outbound: Operation = CHAT

    def request(self, body: dict[str, Any], model: str, provider: Provider) -> dict[str, Any]:
        return to_chat(body, model, provider.who)

    def answer(self, answer: dict[str, Any], usage: Usage, context: Context) -> dict[str, Any]:
        return to_response(answer, usage, context)

    def stream(self, context: Context) -> EventsFromChunks:
        return EventsFromChunks(context)


RESPONSES_TO_CHAT = _ResponsesToChat()
