"""The shapes of the fake upstream's answers, per API: a new API is one more ``Dialect``."""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from tests.support.upstream.behaviour import Behaviour, Received

CREATED = 1_700_000_000
COUNTED_TOKENS = 42
"""What Anthropic's ``count_tokens`` answers, whatever the request."""


class Dialect(Protocol):
    def whole(self, request: Received, behaviour: Behaviour) -> dict[str, Any]: ...

    def events(self, request: Received, behaviour: Behaviour) -> list[bytes]:
        """Every SSE event of a stream, its end marker last."""
        ...

    def error(self, status: int, message: str) -> dict[str, Any]: ...


def _text_pieces(request: Received, behaviour: Behaviour) -> tuple[str, ...]:
    if not behaviour.echo:
        return behaviour.pieces
    words = ("echo: " + request.last_user_text).split(" ")
    return tuple(word if i == 0 else " " + word for i, word in enumerate(words))


class OpenAIChat:
    def whole(self, request: Received, behaviour: Behaviour) -> dict[str, Any]:
        text = "".join(_text_pieces(request, behaviour))
        answer: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": CREATED,
            "model": request.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
        }
        if behaviour.usage:
            answer["usage"] = behaviour.usage_dict
        return answer

    def events(self, request: Received, behaviour: Behaviour) -> list[bytes]:
        """Role chunk, content chunks, finish chunk, usage-only chunk when asked, ``[DONE]``."""
        include_usage = request.include_usage

        def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
            payload: dict[str, Any] = {
                "id": "chatcmpl-fake-stream",
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": request.model,
                "choices": choices,
            }
            if usage is not None or (include_usage and behaviour.usage_null_on_chunks):
                payload["usage"] = usage
            return b"data: " + orjson.dumps(payload) + b"\n\n"

        def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]

        events = [chunk(choice({"role": "assistant", "content": ""}))]
        events += [chunk(choice({"content": p})) for p in _text_pieces(request, behaviour)]
        events.append(chunk(choice({}, "stop")))
        if include_usage and behaviour.usage:
            events.append(chunk([], behaviour.usage_dict))
        events.append(b"data: [DONE]\n\n")
        return events

    def error(self, status: int, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": "server_error"}}


class OpenAIEmbeddings(OpenAIChat):
    """One vector per input, ``[len(input), 0.5, -0.5]``; usage is ``prompt_tokens``."""

    def whole(self, request: Received, behaviour: Behaviour) -> dict[str, Any]:
        given = request.body.get("input") if isinstance(request.body, dict) else None
        inputs = given if isinstance(given, list) else [given]
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(str(item))), 0.5, -0.5]}
            for i, item in enumerate(inputs)
        ]
        tokens = behaviour.prompt_tokens
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {"object": "list", "data": data, "model": request.model, "usage": usage}


class OpenAIResponses(OpenAIChat):
    """The Responses API: one message output item with the same text as the chat answer."""

    def whole(self, request: Received, behaviour: Behaviour) -> dict[str, Any]:
        text = "".join(_text_pieces(request, behaviour))
        content = [{"type": "output_text", "text": text, "annotations": []}]
        message = {
            "type": "message",
            "id": "msg_fake",
            "status": "completed",
            "role": "assistant",
            "content": content,
        }
        tokens = behaviour.prompt_tokens, behaviour.completion_tokens
        return {
            "id": "resp_fake",
            "object": "response",
            "created_at": CREATED,
            "status": "completed",
            "model": request.model,
            "output": [message],
            "usage": {
                "input_tokens": tokens[0],
                "output_tokens": tokens[1],
                "total_tokens": sum(tokens),
            },
        }

    def events(self, request: Received, behaviour: Behaviour) -> list[bytes]:
        """``response.created``, text deltas, ``response.completed`` with the whole response."""
        whole = self.whole(request, behaviour)
        created = {**whole, "status": "in_progress", "output": [], "usage": None}
        events: list[dict[str, Any]] = [{"type": "response.created", "response": created}]
        events += [
            {"type": "response.output_text.delta", "item_id": "msg_fake", "output_index": 0,
             "content_index": 0, "delta": piece}
            for piece in _text_pieces(request, behaviour)
        ]  # fmt: skip
        events.append({"type": "response.completed", "response": whole})
        for number, event in enumerate(events):
            event["sequence_number"] = number
        return [b"event: %s\ndata: %s\n\n" % (e["type"].encode(), orjson.dumps(e)) for e in events]


_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class AnthropicMessages:
    def whole(self, request: Received, behaviour: Behaviour) -> dict[str, Any]:
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": [{"type": "text", "text": "".join(_text_pieces(request, behaviour))}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": behaviour.prompt_tokens,
                "output_tokens": behaviour.completion_tokens,
            },
        }

    def events(self, request: Received, behaviour: Behaviour) -> list[bytes]:
        """``message_start``, text in deltas, ``message_delta`` with usage, ``message_stop``."""
        start = self.whole(request, behaviour)
        start.update(content=[], stop_reason=None)
        start["usage"] = {"input_tokens": behaviour.prompt_tokens, "output_tokens": 1}
        events: list[dict[str, Any]] = [
            {"type": "message_start", "message": start},
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            {"type": "ping"},
        ]
        events += [
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
            for p in _text_pieces(request, behaviour)
        ]
        events += [
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": behaviour.completion_tokens},
            },
            {"type": "message_stop"},
        ]
        return [b"event: %s\ndata: %s\n\n" % (e["type"].encode(), orjson.dumps(e)) for e in events]

    def error(self, status: int, message: str) -> dict[str, Any]:
        kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}


class AnthropicCountTokens(AnthropicMessages):
    """``POST /v1/messages/count_tokens``: ``{"input_tokens": COUNTED_TOKENS}``."""

    def whole(self, request: Received, behaviour: Behaviour) -> dict[str, Any]:
        return {"input_tokens": COUNTED_TOKENS}


DIALECTS: dict[str, Dialect] = {
    "/chat/completions": OpenAIChat(),
    "/embeddings": OpenAIEmbeddings(),
    "/responses": OpenAIResponses(),
    "/messages": AnthropicMessages(),
    "/messages/count_tokens": AnthropicCountTokens(),
}
"""Answer shapes by the path's last segments; a new API is one more entry."""


def dialect_for(path: str) -> Dialect | None:
    route = path.split("?", 1)[0]
    return next((d for suffix, d in DIALECTS.items() if route.endswith(suffix)), None)
