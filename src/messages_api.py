"""``POST /v1/messages``: Anthropic's Messages API in front of any provider.

The body is translated into the gateway's OpenAI shape and travels the same
pipeline as a chat completion (client identity, rules, limits, fallbacks,
telemetry); the answer is translated back, streamed in Anthropic's event
framing when asked for. Errors use Anthropic's envelope.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from . import tokens
from .errors import GatewayError
from .handling import ceiling_of, client_for, guarded, refusal_headers, use_case_of
from .identity import Client
from .models import MessagesRequest, validate_body
from .providers import Usage
from .providers.base import Chunk
from .service import Gateway
from .streaming import Relay, SSEResponse, open_stream
from .telemetry import CallRecord, Telemetry
from .translate.anthropic_request import from_anthropic
from .translate.anthropic_response import to_anthropic_message
from .translate.anthropic_stream import EventsFromChunks
from .wire import anthropic_error_response, json_response, new_request_id, read_json

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


async def messages(request: Request) -> Response | SSEResponse:
    gateway: Gateway = request.app.state.gateway
    telemetry: Telemetry = request.app.state.telemetry
    record = CallRecord(new_request_id(), "/v1/messages", "anonymous")
    client: Client | None = None
    streaming = False
    gateway.enter()
    try:
        client = client_for(gateway, request, record)
        body = await read_json(request, gateway.config.max_body_bytes)
        inbound = validate_body(MessagesRequest, body)
        chat = from_anthropic(body)
        prompt = tokens.prompt_tokens(chat["messages"])
        ticket = await gateway.admit(
            record, client, inbound.model, prompt, inbound.max_tokens, chat,
            use_case=use_case_of(request), ceiling_usd=ceiling_of(request),
        )  # fmt: skip
        headers = {**ticket.headers, "x-request-id": record.request_id}
        message_id = "msg_" + record.request_id.removeprefix("gw-")
        if inbound.stream:
            opened = await guarded(ticket, open_stream(gateway, record, ticket, chat))
            streaming = True
            encoder = AnthropicEncoder(EventsFromChunks(message_id, ticket.model, prompt))
            relay = Relay(gateway, telemetry, record, ticket, encoder, opened, chat)
            return SSEResponse(relay, {**headers, "cache-control": "no-cache"})
        answer = await guarded(ticket, gateway.complete(record, ticket, chat))
        return json_response(
            to_anthropic_message(answer, message_id, ticket.model), headers=headers
        )
    except GatewayError as exc:
        headers = await refusal_headers(gateway, record, exc, client)
        return anthropic_error_response(exc, headers=headers)
    except asyncio.CancelledError:
        record.status, record.outcome = 499, "client_disconnected"
        raise
    except BaseException:
        record.status, record.error_type, record.outcome = 500, "internal_error", "error"
        raise
    finally:
        if not streaming:
            gateway.leave()
            telemetry.emit(record)
