"""The Responses API's objects the translators make: a ``response``, its output items, usage.

Shaped as OpenAI's published schemas say (a ``response`` echoes the request's
settings: instructions, tools, temperature...), so that answers made by
translation read like OpenAI's own.
"""

from __future__ import annotations

from typing import Any

from ..providers.base import Usage
from .base import Context


def response_id(context: Context) -> str:
    return "resp_" + context.request_id.removeprefix("gw-")


def responses_usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def response_object(
    context: Context,
    output: list[dict[str, Any]],
    status: str,
    usage: Usage | None,
    finish: str | None = None,
) -> dict[str, Any]:
    """A ``response`` with the request's settings echoed, as OpenAI's answers do."""
    body = context.request or {}
    incomplete = None
    if status == "incomplete":
        reason = "content_filter" if finish == "content_filter" else "max_output_tokens"
        incomplete = {"reason": reason}
    response: dict[str, Any] = {
        "id": response_id(context),
        "object": "response",
        "created_at": context.created,
        "status": status,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": context.alias,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": None,
        "store": False,
        "temperature": body.get("temperature"),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": [_echoed(tool) for tool in body.get("tools") or ()],
        "top_p": body.get("top_p"),
        "truncation": "disabled",
        "metadata": body.get("metadata") or {},
    }
    if usage is not None:
        response["usage"] = responses_usage(usage)
    return response


def message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": content if status == "completed" else [],
    }


def call_item(call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": "fc_" + call_id.removeprefix("call_"),
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def status_of(finish: object) -> str:
    return "incomplete" if finish in {"length", "content_filter"} else "completed"


def _echoed(tool: Any) -> Any:
    """A request's tool as a response lists it: a function tool with all its fields."""
    if not isinstance(tool, dict) or tool.get("type") != "function":
        return tool
    return {"strict": None, "parameters": None, "description": None, **tool}
