"""The client-facing dialects, and the one place every error body is rendered.

A ``Dialect`` is an API the gateway speaks to its clients. Each writes errors
its own way, and every error the gateway answers (a refusal, a failure, the
HTTP layer's own 400/408/431) goes through the dialect of the route it answers:

- ``SEED`` (``/v1/chat``, the gateway's own API): exactly
  ``{"error": {"type", "message"}}``; a rule's details travel in the
  ``RateLimit`` headers only.
- ``OPENAI`` (the OpenAI-shaped routes and every other path): OpenAI's
  ``ErrorResponse``, ``{"error": {"type", "message", "param", "code"}}``, plus
  ``rule`` when a rule refused (its ``Error`` schema allows further properties).
  ``code`` is the error's identifier, as OpenAI's own errors have it.
- ``ANTHROPIC`` (``/v1/messages``): ``{"type": "error", "error": {"type",
  "message"}}`` with Anthropic's error type names.

A provider's own refusal (``UpstreamRejected`` with its ``UpstreamDetail``)
reaches a client of the provider's dialect as the provider sent it (its key
withheld), and a client of the other dialect with its fields mapped: the
message, type, code and param an SDK reads are kept.

The route table (``routes``) says which dialect each path speaks.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from ..errors import GatewayError, UpstreamDetail, UpstreamRejected

JSON = "application/json"

# The gateway's statuses as Anthropic's error types, for clients of /v1/messages.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}


class Dialect:
    """One client-facing API's error envelope (the OpenAI one; others override ``error_body``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def error_body(self, error: GatewayError) -> dict[str, Any]:
        detail = upstream_detail(error)
        if detail is not None and detail.dialect == self.name:
            # As the provider sent it; the fields SDKs read added where it left them out.
            fields = {"type": error.type, "message": error.message, "param": None, "code": None}
            return {**detail.body, "error": {**fields, **detail.body["error"]}}
        body: dict[str, Any] = {
            "type": error.type,
            "message": error.message,
            "param": error.param,
            "code": error.type,
        }
        if detail is not None:
            body["code"] = detail.code or detail.type or error.type
        if error.rule is not None:
            body["rule"] = error.rule.as_dict()
        return {"error": body}

    def error_bytes(self, error: GatewayError) -> bytes:
        return orjson.dumps(self.error_body(error))

    def error_response(
        self, error: GatewayError, headers: dict[str, str] | None = None
    ) -> Response:
        """The error as an HTTP answer: its status, ``headers``, and its own ``Retry-After``
        and ``WWW-Authenticate``."""
        merged = dict(headers) if headers else {}
        if error.retry_after_s is not None:
            merged["retry-after"] = str(error.retry_after_s)
        if error.challenge is not None:
            merged["www-authenticate"] = error.challenge
        return Response(self.error_bytes(error), error.status, merged, JSON)


class SeedDialect(Dialect):
    def error_body(self, error: GatewayError) -> dict[str, Any]:
        return {"error": {"type": error.type, "message": error.message}}


class AnthropicDialect(Dialect):
    def error_body(self, error: GatewayError) -> dict[str, Any]:
        upstream = upstream_detail(error)
        if upstream is not None and upstream.dialect == self.name:
            fields = {"type": error.type, "message": error.message}
            return {"type": "error", **upstream.body, "error": {**fields, **upstream.body["error"]}}
        fallback = "invalid_request_error" if error.status < 500 else "api_error"
        detail: dict[str, Any] = {
            "type": _ANTHROPIC_TYPES.get(error.status, fallback),
            "message": error.message,
        }
        if error.rule is not None:
            detail["rule"] = error.rule.as_dict()
        return {"type": "error", "error": detail}


def upstream_detail(error: GatewayError) -> UpstreamDetail | None:
    return error.detail if isinstance(error, UpstreamRejected) else None


SEED = SeedDialect("seed")
OPENAI = Dialect("openai")
ANTHROPIC = AnthropicDialect("anthropic")
