"""Request bodies between OpenAI's chat shape and Anthropic's Messages API, both ways.

``to_anthropic`` serves the outbound Anthropic adapter; ``from_anthropic``
serves the inbound ``/v1/messages`` route, whose body then travels the
gateway as an OpenAI body. A field that cannot be carried over raises
``UnsupportedField`` (400) naming the field and who cannot take it, rather
than being dropped in a way that changes the answer.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import UnsupportedField

# OpenAI fields with no effect on an Anthropic call (streaming is the adapter's job).
_IGNORED = frozenset({"stream", "stream_options", "seed", "store", "service_tier", "metadata"})
_INBOUND_FIELDS = frozenset(
    {
        "model", "messages", "system", "max_tokens", "stop_sequences", "temperature",
        "top_p", "top_k", "tools", "tool_choice", "metadata", "stream", "service_tier",
    }
)  # fmt: skip


class _Out:
    """Anthropic messages under construction: consecutive same-role turns merged."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def add(self, role: str, blocks: list[dict[str, Any]]) -> None:
        if self.messages and self.messages[-1]["role"] == role:
            self.messages[-1]["content"].extend(blocks)
        else:
            self.messages.append({"role": role, "content": blocks})


def to_anthropic(
    body: dict[str, Any], model: str, who: str, default_max_tokens: int
) -> dict[str, Any]:
    """An OpenAI chat body as an Anthropic Messages API body for ``model``.

    ``who`` names the provider in errors (``provider 'claude' (anthropic)``).
    """
    request: dict[str, Any] = {"model": model}
    system: list[str] = []
    out = _Out()
    for index, message in enumerate(body["messages"]):
        _message(message, f"messages.{index}", who, system, out)
    if system:
        request["system"] = "\n\n".join(system)
    request["messages"] = out.messages
    request["max_tokens"] = (
        body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
    )
    for field, value in body.items():
        _option(field, value, who, request)
    return request


def _option(field: str, value: Any, who: str, request: dict[str, Any]) -> None:
    """Carry one top-level OpenAI field over, or refuse it."""
    if field in {"model", "messages", "max_tokens", "max_completion_tokens"} or field in _IGNORED:
        return
    if value is None:
        return
    if field == "temperature":
        if not isinstance(value, int | float) or not 0 <= value <= 1:
            raise UnsupportedField(who, field, f"Anthropic accepts 0 to 1, got {value!r}")
        request["temperature"] = value
    elif field in {"top_p", "top_k"}:
        request[field] = value
    elif field == "stop":
        request["stop_sequences"] = [value] if isinstance(value, str) else list(value)
    elif field == "user":
        request["metadata"] = {"user_id": value}
    elif field == "tools":
        request["tools"] = [_tool(tool, f"tools.{i}", who) for i, tool in enumerate(value)]
    elif field == "tool_choice":
        request["tool_choice"] = {**request.get("tool_choice", {}), **_tool_choice(value, who)}
    elif field == "parallel_tool_calls":
        if value is False:
            choice = request.setdefault("tool_choice", {"type": "auto"})
            choice["disable_parallel_tool_use"] = True
    elif not _neutral(field, value):
        raise UnsupportedField(who, field, "the Anthropic Messages API has no such option")


def _neutral(field: str, value: Any) -> bool:
    """Whether an OpenAI option is set to what Anthropic does anyway."""
    neutral: dict[str, Any] = {
        "n": 1, "logprobs": False, "presence_penalty": 0, "frequency_penalty": 0,
        "logit_bias": {}, "response_format": {"type": "text"},
    }  # fmt: skip
    return field in neutral and value == neutral[field]


def _message(message: dict[str, Any], where: str, who: str, system: list[str], out: _Out) -> None:
    role, content = message.get("role"), message.get("content")
    if role in {"system", "developer"}:
        system.append(_text_only(content, f"{where}.content", who))
    elif role == "user":
        out.add("user", _user_blocks(content, f"{where}.content", who))
    elif role == "assistant":
        blocks = _user_blocks(content, f"{where}.content", who) if content else []
        for i, call in enumerate(message.get("tool_calls") or ()):
            blocks.append(_tool_use(call, f"{where}.tool_calls.{i}", who))
        out.add("assistant", blocks)
    elif role == "tool":
        result = {
            "type": "tool_result",
            "tool_use_id": message.get("tool_call_id"),
            "content": _text_only(content, f"{where}.content", who),
        }
        out.add("user", [result])
    else:
        raise UnsupportedField(who, f"{where}.role", f"role {role!r} has no Anthropic equivalent")


def _text_only(content: Any, where: str, who: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for i, part in enumerate(content):
        if part.get("type") != "text":
            raise UnsupportedField(who, f"{where}.{i}.type", "only text is allowed here")
        texts.append(part.get("text", ""))
    return "".join(texts)


def _user_blocks(content: Any, where: str, who: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks = []
    for i, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url"), f"{where}.{i}.image_url", who))
        else:
            raise UnsupportedField(
                who, f"{where}.{i}.type", f"content part {kind!r} has no Anthropic equivalent"
            )
    return blocks


def _image(image: Any, where: str, who: str) -> dict[str, Any]:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise UnsupportedField(who, f"{where}.url", "an image needs a URL")
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";", 1)[0]
        if not header.endswith(";base64") or not media_type.startswith("image/"):
            raise UnsupportedField(who, f"{where}.url", "a data URL must be base64 image data")
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _tool_use(call: dict[str, Any], where: str, who: str) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments") or "{}"
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise UnsupportedField(
            who, f"{where}.function.arguments", "Anthropic needs the arguments as a JSON object"
        )
    return {"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": parsed}


def _tool(tool: dict[str, Any], where: str, who: str) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise UnsupportedField(who, f"{where}.type", "only function tools can be translated")
    function = tool.get("function") or {}
    translated: dict[str, Any] = {
        "name": function.get("name"),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        translated["description"] = function["description"]
    return translated


def _tool_choice(choice: Any, who: str) -> dict[str, Any]:
    simple = {"auto": "auto", "none": "none", "required": "any"}
    if isinstance(choice, str) and choice in simple:
        return {"type": simple[choice]}
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    raise UnsupportedField(who, "tool_choice", f"{choice!r} has no Anthropic equivalent")


# Inbound: Anthropic's request as the gateway's OpenAI body. Only the fields each
# block is known by are read, so hints such as ``cache_control`` are dropped.

_INBOUND = "the gateway's /v1/messages"


def from_anthropic(body: dict[str, Any]) -> dict[str, Any]:
    """A validated Anthropic Messages body as an OpenAI chat body (``model`` kept)."""
    for field in body:
        if field not in _INBOUND_FIELDS:
            raise UnsupportedField(_INBOUND, field, "it cannot be carried to every provider")
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": _blocks_text(system, "system")})
    for index, message in enumerate(body["messages"]):
        messages.extend(_openai_messages(message, f"messages.{index}"))
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
        request["tools"] = [_openai_tool(t, f"tools.{i}") for i, t in enumerate(body["tools"])]
    if body.get("tool_choice"):
        request.update(_openai_tool_choice(body["tool_choice"]))
    user = (body.get("metadata") or {}).get("user_id")
    if isinstance(user, str):
        request["user"] = user
    if body.get("stream"):
        request["stream"] = True
    return request


def _blocks_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for i, block in enumerate(content):
        if block.get("type") != "text":
            raise UnsupportedField(_INBOUND, f"{where}.{i}.type", "only text is allowed here")
        texts.append(block.get("text", ""))
    return "\n\n".join(texts)


def _openai_messages(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
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
            parts.append(_openai_image(block, f"{where}.content.{i}"))
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
            results.append(_openai_tool_result(block, f"{where}.content.{i}"))
        elif kind in {"thinking", "redacted_thinking"}:
            continue  # the model's own reasoning: no other provider can take it back
        else:
            raise UnsupportedField(
                _INBOUND, f"{where}.content.{i}.type", f"block {kind!r} cannot be translated"
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


def _openai_image(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source") or {}
    url: Any
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url":
        url = source.get("url")
    else:
        raise UnsupportedField(_INBOUND, f"{where}.source.type", "use a base64 or url image")
    return {"type": "image_url", "image_url": {"url": url}}


def _openai_tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    content = block.get("content")
    text = _blocks_text(content, f"{where}.content") if content else ""
    if block.get("is_error"):
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text}


def _openai_tool(tool: dict[str, Any], where: str) -> dict[str, Any]:
    if "input_schema" not in tool:
        raise UnsupportedField(_INBOUND, f"{where}.type", "only custom tools can be translated")
    function: dict[str, Any] = {"name": tool.get("name"), "parameters": tool["input_schema"]}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _openai_tool_choice(choice: dict[str, Any]) -> dict[str, Any]:
    kind = choice.get("type")
    translated: dict[str, Any] = {}
    if kind == "tool":
        translated["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif kind in {"auto", "any", "none"}:
        translated["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    else:
        raise UnsupportedField(_INBOUND, "tool_choice.type", f"{kind!r} is not a tool choice")
    if choice.get("disable_parallel_tool_use"):
        translated["parallel_tool_calls"] = False
    return translated
