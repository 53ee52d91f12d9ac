"""One API request from its arrival to its telemetry line: what every endpoint shares.

``endpoint(path, dialect)`` wraps a handler ``(call, request) -> response``.
The wrapper makes the ``Call`` (the gateway the request runs on, taken once so
that a reload does not touch a running request; its telemetry record; its
client once known), answers a refusal in the route's dialect with the
client's limit headers (a refusal of a known client counts against its
request limit, so an over-limit client gets 429 whatever it sends), records
a client that left (499) or a gateway fault (500), and writes the telemetry
line once, unless the handler handed the record to a stream (``Call.stream``),
which writes it when the stream ends. ``serve`` is what a handler does once it
has its ``Inbound`` request: admit, then answer whole or streamed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..errors import GatewayError
from ..governance.identity import Client
from ..observability.telemetry import CallRecord, Telemetry
from ..pipeline.admission import CHAT_BUDGET_FIELDS
from ..pipeline.cost import format_usd
from ..pipeline.gateway import Gateway, Inbound, Ticket
from ..pipeline.streaming import Encoder, OpenedStream, Relay, open_stream
from ..translate import Context
from .dialects import Dialect
from .handling import ceiling_of, guarded, refusal_headers, use_case_of
from .ratelimit_fields import limit_headers
from .streams import SSEResponse
from .wire import COST_HEADER, JSON, new_request_id

Answer = Response | SSEResponse
Handler = Callable[["Call", Request], Awaitable[Answer]]


class Call:
    __slots__ = ("client", "gateway", "record", "streaming", "telemetry")

    def __init__(self, request: Request, path: str) -> None:
        state = request.app.state
        self.gateway: Gateway = state.gateway
        self.telemetry: Telemetry = state.telemetry
        self.record = CallRecord(new_request_id(), path, "anonymous")
        self.client: Client | None = None
        self.streaming = False

    def stream(
        self,
        ticket: Ticket,
        encoder: Encoder,
        opened: OpenedStream,
        body: dict[str, Any],
        headers: dict[str, str],
    ) -> SSEResponse:
        """The streamed answer; from here on the stream owns the record and writes its line."""
        self.streaming = True
        relay = Relay(self.gateway, self.telemetry, self.record, ticket, encoder, opened, body)
        return SSEResponse(relay, {**headers, "cache-control": "no-cache"})


Route = Callable[[Request], Awaitable[Answer]]
# Makes a stream's encoder once its upstream is open (it depends on the translator used).
EncoderFor = Callable[[Ticket, OpenedStream, Context], Encoder]


def endpoint(path: str, dialect: Dialect) -> Callable[[Handler], Route]:
    def wrap(handle: Handler) -> Route:
        async def run(request: Request) -> Answer:
            call = Call(request, path)
            record = call.record
            call.gateway.enter()
            try:
                return await handle(call, request)
            except GatewayError as exc:
                error = exc
                if call.client is not None and not exc.counted:
                    error = await call.gateway.count_refusal(record, call.client, exc)
                headers = await refusal_headers(call.gateway, record, error, call.client)
                return dialect.error_response(error, headers)
            except asyncio.CancelledError:
                record.status, record.outcome = 499, "client_disconnected"
                raise
            except BaseException:
                record.status, record.error_type, record.outcome = 500, "internal_error", "error"
                raise
            finally:
                if not call.streaming:
                    call.gateway.leave()
                    call.telemetry.emit(record)

        # Not functools.wraps: FastAPI would read the handler's own parameters.
        run.__name__, run.__doc__ = handle.__name__, handle.__doc__
        return run

    return wrap


async def serve(
    call: Call,
    request: Request,
    inbound: Inbound,
    *,
    prompt: int,
    budget: int | None,
    stream: EncoderFor | None,
    completes: bool = True,
    budget_fields: tuple[str, ...] = CHAT_BUDGET_FIELDS,
    choices: int = 1,
) -> Answer:
    """Admit the request, then answer it whole or (``stream``: how to encode it) streamed.

    ``prompt`` is the approximate prompt, ``budget`` the completion the client allows for
    each of the answer's ``choices``.
    """
    gateway, record = call.gateway, call.record
    assert call.client is not None
    ticket = await gateway.admit(
        record, call.client, inbound.model, prompt, budget, inbound.body,
        use_case=use_case_of(request), ceiling_usd=ceiling_of(request), completes=completes,
        budget_fields=budget_fields, choices=choices,
    )  # fmt: skip
    if ticket.body_changed:
        inbound.raw = None
    headers = {**limit_headers(call.client, ticket.quota), "x-request-id": record.request_id}
    if stream is not None:
        opened = await guarded(ticket, open_stream(gateway, record, ticket, inbound))
        context = Context(ticket.model, record.request_id, ticket.prompt_estimate, inbound.body)
        return call.stream(ticket, stream(ticket, opened, context), opened, inbound.body, headers)
    answered = await guarded(ticket, gateway.complete(record, ticket, inbound))
    if record.cost_usd is not None:
        headers[COST_HEADER] = format_usd(record.cost_usd)
    return Response(answered.content(), 200, headers, JSON)
