"""Bytes on the wire: reading JSON bodies within limits, reading headers, writing JSON answers.

Errors are written by the route's dialect (``dialects``).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ..config import GatewayConfig
from ..errors import (
    ClientGone,
    InvalidRequest,
    RequestTooLarge,
    UnsupportedMediaType,
)
from ..nesting import deeper_than_async

JSON = "application/json"
# The header of an answer's cost, in US dollars.
COST_HEADER = "x-gateway-cost-usd"
# Bodies at least this large are decoded off the event loop (orjson decodes about 1 GB/s:
# a body of several images would hold every other request for tens of milliseconds).
_PARSE_IN_THREAD_BYTES = 1024 * 1024


def new_request_id() -> str:
    # Unique, not secret: the cheap generator does (no system call per request).
    return f"gw-{random.getrandbits(48):012x}"


def header(request: Request, name: str) -> str | None:
    """The request's header ``name`` (lower case; the first one if repeated).

    From a table built once per request: Starlette's ``headers.get`` scans the
    list and raises ``KeyError`` inside for an absent header, and most of the
    headers the gateway looks for are absent on most requests.
    """
    scope = request.scope
    table: dict[str, bytes] | None = scope.get("gateway.headers")
    if table is None:
        table = {}
        for key, value in scope["headers"]:
            table.setdefault(key.decode("latin-1"), value)
        scope["gateway.headers"] = table
    value = table.get(name)
    return None if value is None else value.decode("latin-1")


async def read_json(request: Request, config: GatewayConfig) -> Any:
    """The decoded JSON body (see ``read_body``)."""
    return (await read_body(request, config))[1]


async def read_body(request: Request, config: GatewayConfig) -> tuple[bytes, Any]:
    """The body's bytes and their decoded JSON; refuses what is too large (``max_body_bytes``)
    before reading it all, and what nests objects and arrays deeper than ``max_json_depth``.
    A large body is decoded in a worker thread, so other requests are not held up."""
    max_bytes, max_depth = config.max_body_bytes, config.max_json_depth
    content_type = header(request, "content-type")
    if content_type is not None and not _is_json(content_type):
        raise UnsupportedMediaType(
            "The body must be JSON: send it with 'Content-Type: application/json'."
        )
    declared = header(request, "content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone("The client closed the connection before its body arrived.") from None
    raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        if len(raw) < _PARSE_IN_THREAD_BYTES:
            value = orjson.loads(raw)
        else:
            value = await asyncio.to_thread(orjson.loads, raw)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):  # orjson's own bound, at 1024
            raise _too_deep(max_depth) from None
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.") from None
    if await deeper_than_async(value, max_depth):
        raise _too_deep(max_depth)
    return raw, value


def json_response(
    content: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(content), status, headers, JSON)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON or (media.startswith("application/") and media.endswith("+json"))


def _too_deep(max_depth: int) -> InvalidRequest:
    return InvalidRequest(
        f"The request body nests objects and arrays more than {max_depth} levels deep."
    )


def _too_large(max_bytes: int) -> RequestTooLarge:
    return RequestTooLarge(f"The request body is larger than {max_bytes} bytes.")
