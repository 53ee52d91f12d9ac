"""What every endpoint handler does around the pipeline, whatever its dialect."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from .errors import GatewayError
from .models import MAX_CLIENT_ID
from .service import Gateway, Ticket
from .telemetry import CallRecord


def client_of(request: Request) -> str:
    """The caller of the OpenAI- and Anthropic-shaped routes: ``X-Client-Id``, else anonymous."""
    return (request.headers.get("x-client-id") or "anonymous")[:MAX_CLIENT_ID]


def use_case_of(request: Request) -> str | None:
    return request.headers.get("x-use-case") or None


async def guarded(ticket: Ticket, work: Any) -> Any:
    """Await ``work``; a refusal after admission still carries the client's limit headers."""
    try:
        return await work
    except GatewayError as exc:
        exc.headers = {**ticket.headers, **exc.headers}
        raise


async def refusal_headers(
    gateway: Gateway, record: CallRecord, exc: GatewayError
) -> dict[str, str]:
    """Record a refusal on the telemetry record; the headers its answer carries."""
    record.status, record.error_type = exc.status, exc.type
    record.outcome = "upstream_error" if exc.type.startswith("upstream") else "refused"
    headers = {"x-request-id": record.request_id}
    if "x-ratelimit-limit-requests" not in exc.headers:
        headers.update(await gateway.quota_headers(record.client_id))
    return headers
