"""What every endpoint handler does around the pipeline, whatever its dialect."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ..errors import GatewayError, PermissionDenied
from ..governance.identity import Client
from ..observability.telemetry import CallRecord
from ..pipeline.admission import Ticket
from ..pipeline.gateway import Gateway
from ..pipeline.refusals import CEILING_HEADER, parse_ceiling, with_rule_fields
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
    """Await ``work``; a refusal after admission still carries the client's limit headers."""
    try:
        return await work
    except GatewayError as exc:
        exc.headers = {**ticket.headers, **exc.headers}
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
    headers = {"x-request-id": record.request_id}
    if client is not None and "x-ratelimit-limit-requests" not in exc.headers:
        headers.update(await gateway.quota_headers(record.client_id, client))
    if exc.rule is not None and "ratelimit" not in exc.headers:
        with_rule_fields(exc, client)
    return headers
