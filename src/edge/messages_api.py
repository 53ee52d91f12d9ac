"""``POST /v1/messages`` and ``/v1/messages/count_tokens``: Anthropic's Messages API.

A Messages request travels the same pipeline as a chat completion (client
identity, rules, limits, fallbacks, telemetry) in its own shape: to an
``anthropic`` provider it passes through as it came (thinking, documents,
server tools, ``cache_control``, beta headers and all), and the answer and
its events come back as the provider sent them, the model replaced by the
alias. To another provider it is translated (``translate.anthropic_openai``).
Errors use Anthropic's envelope.

``count_tokens`` asks the alias's first ``anthropic`` target for its count;
an alias without one is answered with the gateway's estimate (the words of
the prompt's text, as everywhere the gateway estimates). It counts against
no limit and costs nothing.
"""

from __future__ import annotations

from starlette.requests import Request

from ..pipeline import tokens
from ..pipeline.gateway import Inbound, Ticket
from ..pipeline.streaming import OpenedStream
from ..pipeline.upstream import call as upstream_call
from ..providers import AttemptFailed
from ..providers.anthropic import FORWARDED
from ..providers.operations import COUNT_TOKENS, MESSAGES
from ..translate import Context
from .encoders import EventEncoder
from .exchange import Answer, Call, serve
from .handling import client_for
from .schemas import CountTokensRequest, MessagesRequest, validate_body
from .wire import header, json_response, read_body


async def messages(call: Call, request: Request) -> Answer:
    """Anthropic's Messages API: passed through to Anthropic, translated to others."""
    gateway, record = call.gateway, call.record
    call.client = client_for(gateway, request, record)
    await gateway.refuse_over_limit(record.client_id, call.client)
    raw, body = await read_body(request, gateway.config)
    inbound = await validate_body(MessagesRequest, body)

    def encoder(ticket: Ticket, opened: OpenedStream, context: Context) -> EventEncoder:
        translator = opened.translator.stream(context) if opened.translator else None
        return EventEncoder(MESSAGES, ticket.model, translator)

    return await serve(
        call, request, Inbound(MESSAGES, body, raw, forwarded(request)),
        prompt=await tokens.messages_prompt_tokens_async(body), budget=inbound.max_tokens,
        stream=encoder if inbound.stream else None, budget_fields=("max_tokens",),
    )  # fmt: skip


async def count_tokens(call: Call, request: Request) -> Answer:
    """``{"input_tokens": n}``: the alias's Anthropic provider's count, else the estimate."""
    gateway, record = call.gateway, call.record
    call.client = client_for(gateway, request, record)
    raw, body = await read_body(request, gateway.config)
    counted = await validate_body(CountTokensRequest, body)
    route, rule = gateway.router.resolve(counted.model, record.client_id, None, 0)
    record.alias, record.requested_model, record.route = route.name, counted.model, rule
    call.client.check_model(route.name)
    headers = {"x-request-id": record.request_id}
    estimate = await tokens.messages_prompt_tokens_async(body)
    for target in (*route.group, *route.fallbacks):
        provider = gateway.providers[target.provider]
        if "count_tokens" not in provider.speaks:
            continue
        record.provider, record.upstream_model = target.provider, target.model
        inbound = Inbound(COUNT_TOKENS, body, raw, forwarded(request))
        try:
            called = await upstream_call(inbound, provider, target.model)
        except AttemptFailed as exc:  # the provider is down: the estimate still answers
            record.error_type = exc.kind
            break
        record.prompt_tokens = called.reply.data.get("input_tokens")
        return json_response(called.reply.data, headers=headers)
    record.prompt_tokens = estimate
    return json_response({"input_tokens": estimate}, headers=headers)


def forwarded(request: Request) -> dict[str, str]:
    """The client's headers Anthropic's API defines, for an Anthropic provider to forward."""
    found = {}
    for name in FORWARDED:
        value = header(request, name)
        if value is not None:
            found[name] = value
    return found
