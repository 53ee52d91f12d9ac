"""``POST /v1/messages``: Anthropic's Messages API in front of any provider.

The body is translated into the gateway's OpenAI shape and travels the same
pipeline as a chat completion (client identity, rules, limits, fallbacks,
telemetry); the answer is translated back, streamed in Anthropic's event
framing when asked for. Errors use Anthropic's envelope.
"""

from __future__ import annotations

from starlette.requests import Request

from ..pipeline import tokens
from ..pipeline.streaming import open_stream
from ..providers import Usage
from ..providers.base import Chunk
from ..translate.anthropic_request import from_anthropic
from ..translate.anthropic_response import to_anthropic_message
from ..translate.anthropic_stream import EventsFromChunks
from .exchange import Answer, Call
from .handling import ceiling_of, client_for, guarded, use_case_of
from .schemas import MessagesRequest, validate_body
from .wire import json_response, read_json

# Why a stream ended early, as Anthropic's error type.
_ANTHROPIC_KINDS = {"upstream_error": "api_error", "service_unavailable": "overloaded_error"}


class AnthropicEncoder:
    """Anthropic's framing for a ``Relay``: named events, ``message_stop`` at the end."""

    def __init__(self, events: EventsFromChunks) -> None:
        self._events = events

    def chunk(self, chunk: Chunk) -> bytes:
        return self._events.chunk(chunk)

    def end(self, usage: Usage, reported: bool) -> bytes:
        return self._events.end(usage.prompt_tokens, usage.completion_tokens)

    def failed(self, message: str, kind: str = "upstream_error") -> bytes:
        return self._events.error(_ANTHROPIC_KINDS.get(kind, "api_error"), message)


async def messages(call: Call, request: Request) -> Answer:
    """Anthropic's Messages API: translated in, through the pipeline, translated back."""
    gateway, record = call.gateway, call.record
    call.client = client_for(gateway, request, record)
    body = await read_json(request, gateway.config.max_body_bytes)
    inbound = validate_body(MessagesRequest, body)
    chat = from_anthropic(body)
    prompt = tokens.prompt_tokens(chat["messages"])
    ticket = await gateway.admit(
        record, call.client, inbound.model, prompt, inbound.max_tokens, chat,
        use_case=use_case_of(request), ceiling_usd=ceiling_of(request),
    )  # fmt: skip
    headers = {**ticket.headers, "x-request-id": record.request_id}
    message_id = "msg_" + record.request_id.removeprefix("gw-")
    if inbound.stream:
        opened = await guarded(ticket, open_stream(gateway, record, ticket, chat))
        encoder = AnthropicEncoder(EventsFromChunks(message_id, ticket.model, prompt))
        return call.stream(ticket, encoder, opened, chat, headers)
    answer = await guarded(ticket, gateway.complete(record, ticket, chat))
    return json_response(to_anthropic_message(answer, message_id, ticket.model), headers=headers)
