"""``GET /v1/models`` and ``GET /v1/models/{model_id}``: the aliases a caller may use.

Each answers in the caller's dialect: Anthropic's model list (``type:
"model"``, ``display_name``, ``created_at``, ``has_more``...) to a client of
Anthropic's API, told by the ``anthropic-version`` or ``x-api-key`` header its
SDK sends (Claude Code discovers a gateway's models this way), OpenAI's
otherwise. A model outside the caller's allow-list, or no alias at all, is
404 ``model_not_found``.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..errors import GatewayError, ModelNotFound
from ..governance.identity import Client
from ..pipeline.gateway import Gateway
from .dialects import ANTHROPIC, OPENAI, Dialect
from .wire import header, json_response

_STARTED = int(time.time())
_STARTED_ISO = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(_STARTED))


async def list_models(request: Request) -> Response:
    """The aliases the caller may use (all of them in open mode)."""
    dialect = _dialect(request)
    try:
        client = _client(request)
    except GatewayError as exc:
        return dialect.error_response(exc)
    data = [_model(alias, dialect) for alias in client.models]
    if dialect is ANTHROPIC:
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return json_response({"data": data, "has_more": False, "first_id": first, "last_id": last})
    return json_response({"object": "list", "data": data})


async def retrieve_model(request: Request) -> Response:
    """One alias the caller may use; 404 ``model_not_found`` for any other name."""
    dialect = _dialect(request)
    model_id = request.path_params["model_id"]
    try:
        client = _client(request)
        if model_id not in client.models:
            raise ModelNotFound(
                f"The model {model_id[:100]!r} does not exist or you do not have access to it.",
                param="model",
            )
    except GatewayError as exc:
        return dialect.error_response(exc)
    return json_response(_model(model_id, dialect))


def _dialect(request: Request) -> Dialect:
    anthropic = header(request, "anthropic-version") or header(request, "x-api-key")
    return ANTHROPIC if anthropic is not None else OPENAI


def _client(request: Request) -> Client:
    gateway: Gateway = request.app.state.gateway
    identity = gateway.identity
    if identity.open:
        return identity.default
    return identity.authenticate(header(request, "authorization"), header(request, "x-api-key"))


def _model(alias: str, dialect: Dialect) -> dict[str, Any]:
    if dialect is ANTHROPIC:
        return {"type": "model", "id": alias, "display_name": alias, "created_at": _STARTED_ISO}
    return {"id": alias, "object": "model", "created": _STARTED, "owned_by": "gateway"}
