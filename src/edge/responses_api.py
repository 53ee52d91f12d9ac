"""``POST /v1/responses``: OpenAI's Responses API in front of any provider.

The request travels the pipeline as a chat completion does (client identity,
rules, limits and the token reservation from ``max_output_tokens``, budgets,
policies on ``instructions`` and ``input``, fallbacks before the first byte,
telemetry). To an ``openai`` or ``azure`` provider it passes through as it
came, and the answer and its events come back as the provider sent them,
the model replaced by the alias; stateful features (``previous_response_id``,
``store``, ``conversation``) are the provider's, the gateway keeps nothing.
To a provider without the Responses API it is translated
(``translate.responses_anthropic``, ``translate.responses_chat``), and what
does not map is refused with a 400 naming the field.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..errors import GatewayError, RouteNotFound, UpstreamError
from ..governance.identity import Client
from ..pipeline import tokens
from ..pipeline.gateway import Gateway, Inbound, Ticket
from ..pipeline.streaming import OpenedStream
from ..providers import AttemptFailed
from ..providers.openai import OpenAIProvider
from ..providers.operations import RESPONSES
from ..translate import Context
from .dialects import OPENAI
from .encoders import EventEncoder
from .exchange import Answer, Call, serve
from .handling import client_for
from .schemas import ResponsesRequest, validate_body
from .wire import JSON, header, read_body


async def responses(call: Call, request: Request) -> Answer:
    """The Responses API, streamed or not: passed through to OpenAI, translated to others."""
    gateway, record = call.gateway, call.record
    call.client = client_for(gateway, request, record)
    await gateway.refuse_over_limit(record.client_id, call.client)
    raw, body = await read_body(request, gateway.config)
    inbound = await validate_body(ResponsesRequest, body)

    def encoder(ticket: Ticket, opened: OpenedStream, context: Context) -> EventEncoder:
        translator = opened.translator.stream(context) if opened.translator else None
        return EventEncoder(RESPONSES, ticket.model, translator)

    return await serve(
        call, request, Inbound(RESPONSES, body, raw),
        prompt=tokens.responses_prompt_tokens(body), budget=inbound.max_output_tokens,
        stream=encoder if inbound.stream else None, budget_fields=("max_output_tokens",),
    )  # fmt: skip


async def stored_response(request: Request) -> Response:
    """``GET``/``DELETE /v1/responses/{id}``, ``POST .../cancel``, ``GET .../input_items``:
    passed to the OpenAI provider that keeps the response.

    The gateway keeps no response itself. The provider is the first ``openai`` one among
    the targets of the aliases the caller may use; the answer is the provider's as sent.
    """
    gateway: Gateway = request.app.state.gateway
    try:
        client = _caller(gateway, request)
        provider = _keeper(gateway, client)
        path = request.url.path.removeprefix("/v1")
        content = await provider.stored(request.method, path, request.url.query.encode())
    except AttemptFailed as exc:
        return OPENAI.error_response(UpstreamError(exc.message))
    except GatewayError as exc:
        return OPENAI.error_response(exc)
    return Response(content, 200, media_type=JSON)


def _caller(gateway: Gateway, request: Request) -> Client:
    identity = gateway.identity
    if identity.open:
        return identity.default
    return identity.authenticate(header(request, "authorization"), header(request, "x-api-key"))


def _keeper(gateway: Gateway, client: Client) -> OpenAIProvider:
    for alias in client.models:
        for _, target in gateway.config.aliases[alias].all_targets():
            provider = gateway.providers[target.provider]
            if isinstance(provider, OpenAIProvider) and provider.kind == "openai":
                return provider
    raise RouteNotFound("No OpenAI provider behind the models this caller may use keeps responses.")
