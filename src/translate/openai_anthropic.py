"""Chat completions in, Anthropic Messages upstream: the ``openai_anthropic`` translator.

The request: system and developer messages become ``system``, tool calls and
results become ``tool_use`` and ``tool_result`` blocks, images become image
blocks, ``response_format`` with a JSON schema becomes ``output_config``; a
field that cannot be carried over raises ``UnsupportedField`` (400) naming
the field and the provider, rather than being dropped in a way that changes
the answer. The answer and the stream come back as ``chat.completion`` and
``chat.completion.chunk``s, with Anthropic's cache reads in OpenAI's
``prompt_tokens_details.cached_tokens``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from ..errors import UnsupportedField
from ..nesting import deeper_than
from ..providers import Provider
from ..providers.base import Usage
from ..providers.operations import CHAT, MESSAGES, Operation
from .base import Context

Chunk = dict[str, Any]

# Tool-call arguments are JSON inside a string, out of reach of the body's nesting bound:
# held to the most max_json_depth may be, so the Anthropic body always re-encodes.
MAX_ARGUMENTS_DEPTH = 128

# OpenAI fields with no effect on an Anthropic call (streaming is the adapter's job).
_IGNORED = frozenset({"stream", "stream_options", "seed", "store", "service_tier", "metadata"})


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
    elif (
        field == "response_format"
        and isinstance(value, dict)
        and value.get("type") == "json_schema"
    ):
        schema = (value.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise UnsupportedField(who, "response_format.json_schema.schema", "a schema is needed")
        request["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
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
    if not isinstance(parsed, dict) or deeper_than(parsed, MAX_ARGUMENTS_DEPTH):
        raise UnsupportedField(
            who,
            f"{where}.function.arguments",
            "Anthropic needs the arguments as a JSON object"
            f" nested at most {MAX_ARGUMENTS_DEPTH} levels deep",
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


# Anthropic stop_reason -> OpenAI finish_reason
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: object) -> str | None:
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(str(stop_reason), "stop")


def openai_usage(usage: object) -> dict[str, Any] | None:
    """Anthropic usage as OpenAI's: the prompt includes the cache reads and writes."""
    if not isinstance(usage, dict):
        return None
    fresh, output = usage.get("input_tokens"), usage.get("output_tokens")
    if type(fresh) is not int or type(output) is not int:
        return None
    cached = usage.get("cache_read_input_tokens") or 0
    prompt = fresh + cached + (usage.get("cache_creation_input_tokens") or 0)
    translated: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
    }
    if cached:
        translated["prompt_tokens_details"] = {"cached_tokens": cached}
    return translated


def to_openai_answer(message: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic ``message`` as a ``chat.completion``."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
    reply: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if calls:
        reply["tool_calls"] = calls
    answer: dict[str, Any] = {
        "id": message.get("id"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model"),
        "choices": [
            {
                "index": 0,
                "message": reply,
                "finish_reason": finish_reason(message.get("stop_reason")) or "stop",
                "logprobs": None,
            }
        ],
    }
    usage = openai_usage(message.get("usage"))
    if usage is not None:
        answer["usage"] = usage
    return answer


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

    def end(self, usage: Usage) -> list[Chunk]:
        return []  # message_stop made the last chunks

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


class _ChatToMessages:
    name = "openai_anthropic"
    inbound: Operation = CHAT
    outbound: Operation = MESSAGES

    def request(self, body: dict[str, Any], model: str, provider: Provider) -> dict[str, Any]:
        return to_anthropic(body, model, provider.who, provider.default_max_tokens)

    def answer(self, answer: dict[str, Any], usage: Usage, context: Context) -> dict[str, Any]:
        return to_openai_answer(answer)

    def stream(self, context: Context) -> ChunksFromEvents:
        return ChunksFromEvents()


CHAT_TO_MESSAGES = _ChatToMessages()
