"""The OpenAI-shaped and seed endpoints: each turns one route's body into the pipeline's calls.

``/v1/messages`` (Anthropic's dialect) lives in ``messages_api``, ``/v1/responses``
in ``responses_api``; the operator routes in ``dashboard``, ``reload`` and ``explain``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..errors import InvalidRequest
from ..observability.telemetry import CallRecord, Telemetry
from ..pipeline import tokens
from ..pipeline.cost import format_usd
from ..pipeline.gateway import Gateway, Inbound, Ticket
from ..pipeline.streaming import OpenedStream
from ..providers.operations import CHAT, EMBEDDINGS
from ..translate import Context
from .encoders import ChatEncoder
from .exchange import Answer, Call, serve
from .handling import authenticate, ceiling_of, client_for, guarded, impostor, use_case_of
from .ratelimit_fields import limit_headers
from .schemas import (
    MAX_CLIENT_ID,
    ChatCompletionRequest,
    EmbeddingsRequest,
    KeyedSeedChatRequest,
    SeedChatRequest,
    validate_body,
)
from .wire import COST_HEADER, json_response, read_body, read_json


async def chat_completions(call: Call, request: Request) -> Answer:
    """OpenAI's chat completions, streamed or not; the caller is its key (or ``X-Client-Id``)."""
    gateway, record = call.gateway, call.record
    call.client = client_for(gateway, request, record)
    await gateway.refuse_over_limit(record.client_id, call.client)
    raw, body = await read_body(request, gateway.config)
    chat = await validate_body(ChatCompletionRequest, body)
    include_usage = bool(chat.stream_options and chat.stream_options.include_usage)

    def encoder(ticket: Ticket, opened: OpenedStream, context: Context) -> ChatEncoder:
        price = gateway.prices.price(record.provider or "", record.upstream_model or "")
        translator = opened.translator.stream(context) if opened.translator else None
        return ChatEncoder(include_usage, ticket.model, record.request_id, price, translator)

    return await serve(
        call, request, Inbound(CHAT, body, raw),
        prompt=await tokens.prompt_tokens_async(body["messages"]),
        budget=chat.completion_budget(), choices=chat.choices(),
        stream=encoder if chat.stream else None,
    )  # fmt: skip


async def seed_chat(call: Call, request: Request) -> Answer:
    """The gateway's own simple dialect: the caller in the body (or its API key), a flat answer."""
    gateway, record = call.gateway, call.record
    keyed = not gateway.identity.open
    if keyed:
        call.client = authenticate(gateway, request, record)
        await gateway.refuse_over_limit(record.client_id, call.client)
    body = await read_json(request, gateway.config)
    claimed = body.get("client_id") if isinstance(body, dict) else None
    if not keyed and isinstance(claimed, str) and claimed:
        record.client_id = claimed[:MAX_CLIENT_ID]
    chat = await validate_body(KeyedSeedChatRequest if keyed else SeedChatRequest, body)
    if chat.stream:
        raise InvalidRequest(
            "/v1/chat does not stream; use /v1/chat/completions with stream=true.",
            param="stream",
        )
    if call.client is None:
        call.client = gateway.identity.default
    elif claimed is not None and claimed != call.client.id:
        raise impostor("The body's client_id", claimed, call.client)
    upstream_body = {k: v for k, v in body.items() if k != "client_id"}
    ticket = await gateway.admit(
        record, call.client, chat.model, await tokens.prompt_tokens_async(body["messages"]),
        chat.completion_budget(), upstream_body, use_case=use_case_of(request),
        ceiling_usd=ceiling_of(request), choices=chat.choices(),
    )  # fmt: skip
    inbound = Inbound(CHAT, upstream_body)
    answered = await guarded(ticket, gateway.complete(record, ticket, inbound))
    answer = answered.data
    reply = {
        "id": record.request_id,
        "model": ticket.model,
        "provider": record.provider,
        "usage": answer["usage"],
        "message": _first_message(answer),
    }
    headers = {**limit_headers(call.client, ticket.quota), "x-request-id": record.request_id}
    return json_response(reply, headers=_with_cost(headers, record))


async def embeddings(call: Call, request: Request) -> Answer:
    """OpenAI's embeddings, through the same aliases, rules, limits, fallbacks and telemetry."""
    gateway, record = call.gateway, call.record
    call.client = client_for(gateway, request, record)
    await gateway.refuse_over_limit(record.client_id, call.client)
    raw, body = await read_body(request, gateway.config)
    embed = await validate_body(EmbeddingsRequest, body)
    return await serve(
        call, request, Inbound(EMBEDDINGS, body, raw),
        prompt=embed.input_tokens(), budget=0, stream=None, completes=False,
    )  # fmt: skip


async def healthz(request: Request) -> Response:
    """``{"status": "ok"}``; ``?verbose=1`` adds every target's breaker and lost telemetry lines."""
    if request.query_params.get("verbose") not in {"1", "true"}:
        return json_response({"status": "ok"})
    gateway: Gateway = request.app.state.gateway
    telemetry: Telemetry = request.app.state.telemetry
    targets = gateway.router.health()
    degraded = any(target["state"] != "closed" for target in targets)
    return json_response(
        {
            "status": "degraded" if degraded else "ok",
            "targets": targets,
            "telemetry_lines_lost": telemetry.writer.dropped,
        }
    )


def _with_cost(headers: dict[str, str], record: CallRecord) -> dict[str, str]:
    """The answer's cost header, when its model has a price."""
    if record.cost_usd is not None:
        headers[COST_HEADER] = format_usd(record.cost_usd)
    return headers


def _first_message(answer: dict[str, Any]) -> dict[str, Any]:
    first = answer["choices"][0] if answer["choices"] else None
    message = first.get("message") if isinstance(first, dict) else None
    if not isinstance(message, dict):
        return {"role": "assistant", "content": None}
    reply = {"role": message.get("role", "assistant"), "content": message.get("content")}
    if message.get("tool_calls"):
        reply["tool_calls"] = message["tool_calls"]
    return reply
