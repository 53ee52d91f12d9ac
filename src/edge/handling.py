"""What every endpoint handler does around the pipeline, whatever its dialect."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ..errors import GatewayError, InvalidRequest, PermissionDenied
from ..governance.identity import Client
from ..observability.telemetry import CallRecord
from ..pipeline.admission import Ticket
from ..pipeline.gateway import Gateway
from ..pipeline.refusals import CEILING_HEADER
from .ratelimit_fields import quota_headers
from .schemas import MAX_CLIENT_ID
from .wire import header


def client_of(request: Request) -> str:
    """The caller of the OpenAI- and Anthropic-shaped routes: ``X-Client-Id``, else anonymous."""
    return (header(request, "x-client-id") or "anonymous")[:MAX_CLIENT_ID]


def client_for(gateway: Gateway, request: Request, record: CallRecord) -> Client:
    """The caller of the OpenAI- and Anthropic-shaped routes, named on ``record``.

    Open mode: ``X-Client-Id`` (else anonymous). With clients: the API key's
    client; an ``X-Client-Id`` naming another client is refused.
    """
    if gateway.identity.open:
        record.client_id = client_of(request)
        return gateway.identity.default
    client = authenticate(gateway, request, record)
    claimed = header(request, "x-client-id")
    if claimed and claimed != client.id:
        raise impostor("The X-Client-Id header", claimed, client)
    return client


def authenticate(gateway: Gateway, request: Request, record: CallRecord) -> Client:
    """The client of the request's API key (``AuthenticationFailed`` without one)."""
    client = gateway.identity.authenticate(
        header(request, "authorization"), header(request, "x-api-key")
    )
    assert client.id is not None
    record.client_id = client.id
    return client


def impostor(where: str, claimed: str, client: Client) -> PermissionDenied:
    return PermissionDenied(
        f"{where} {claimed[:MAX_CLIENT_ID]!r} is not the client of this API key ({client.id!r})."
    )


def use_case_of(request: Request) -> str | None:
    return header(request, "x-use-case") or None


def ceiling_of(request: Request) -> float | None:
    """The client's cost ceiling (``X-Max-Cost-USD``), if it sent one."""
    return parse_ceiling(header(request, CEILING_HEADER))


async def guarded(ticket: Ticket, work: Any) -> Any:
    """Await ``work``; a refusal after admission still carries the client's quota."""
    try:
        return await work
    except GatewayError as exc:
        if exc.quota is None:
            exc.quota = ticket.quota
        exc.counted = True
        raise


async def refusal_headers(
    gateway: Gateway, record: CallRecord, exc: GatewayError, client: Client | None
) -> dict[str, str]:
    """Record a refusal on the telemetry record; the headers its answer carries.

    The client's quota once the client is known (not for a refused API key), and
    the refusing rule's ``RateLimit-Policy``/``RateLimit`` fields.
    """
    record.status, record.error_type = exc.status, exc.type
    if exc.status == 499:
        record.outcome = "client_disconnected"
    else:
        record.outcome = "upstream_error" if exc.type.startswith("upstream") else "refused"
    if client is not None and exc.quota is None:
        exc.quota = await gateway.quota(record.client_id, client)
    return {"x-request-id": record.request_id, **quota_headers(exc, client)}


def parse_ceiling(value: str | None) -> float | None:
    """The ``X-Max-Cost-USD`` header as a number of dollars; 400 when it is not one."""
    if value is None:
        return None
    try:
        ceiling = float(value)
    except ValueError:
        ceiling = -1.0
    if not ceiling >= 0 or ceiling == float("inf"):
        raise InvalidRequest(
            f"X-Max-Cost-USD must be a non-negative number of US dollars, not {value[:40]!r}.",
            param=CEILING_HEADER,
        )
    return ceiling
