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
- ``ANTHROPIC`` (``/v1/messages``): ``{"type": "error", "error": {"type",
  "message"}}`` with Anthropic's error type names.

The route table (``routes``) says which dialect each path speaks.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from ..errors import GatewayError

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
        body: dict[str, Any] = {
            "type": error.type,
            "message": error.message,
            "param": error.param,
            "code": None,
        }
        if error.rule is not None:
            body["rule"] = error.rule.as_dict()
        return {"error": body}

    def error_bytes(self, error: GatewayError) -> bytes:
        return orjson.dumps(self.error_body(error))

    def error_response(
        self, error: GatewayError, headers: dict[str, str] | None = None
    ) -> Response:
        """The error as an HTTP answer: its status, its own headers over ``headers``."""
        merged = {**headers, **error.headers} if headers else error.headers
        return Response(self.error_bytes(error), error.status, merged, JSON)


class SeedDialect(Dialect):
    def error_body(self, error: GatewayError) -> dict[str, Any]:
        return {"error": {"type": error.type, "message": error.message}}


class AnthropicDialect(Dialect):
    def error_body(self, error: GatewayError) -> dict[str, Any]:
        fallback = "invalid_request_error" if error.status < 500 else "api_error"
        detail: dict[str, Any] = {
            "type": _ANTHROPIC_TYPES.get(error.status, fallback),
            "message": error.message,
        }
        if error.rule is not None:
            detail["rule"] = error.rule.as_dict()
        return {"type": "error", "error": detail}


SEED = SeedDialect("seed")
OPENAI = Dialect("openai")
ANTHROPIC = AnthropicDialect("anthropic")
