"""The gateway's one error hierarchy.

Every refusal or failure a client can see is a ``GatewayError``: it carries the
HTTP status, the error ``type`` of the envelope, a message that is safe to show
(never a key), and what the answer's headers say about it (when to retry, the
client's quota, the refusing rule, the authentication scheme), as data: the
edge renders body and headers in the caller's dialect (``edge.dialects``);
nothing else builds error bodies or headers.

    GatewayError
    ├── InvalidRequest            400 invalid_request_error
    │   └── UnsupportedField      400 invalid_request_error (a field a provider cannot take)
    ├── PromptTooLarge            400 prompt_too_large
    ├── ContentBlocked            400 content_blocked       (a block_pattern policy)
    ├── InvalidConfig             400 invalid_config        (a reload refused)
    ├── CostCeilingExceeded       400 cost_ceiling_exceeded (the quote is over X-Max-Cost-USD)
    ├── AuthenticationFailed      401 authentication_error  (WWW-Authenticate: Bearer)
    ├── PermissionDenied          403 permission_denied
    ├── ModelNotAllowed           403 model_not_allowed
    ├── PolicyDenied              403 policy_denied
    ├── RouteNotFound             404 not_found
    ├── ModelNotFound             404 model_not_found
    ├── MethodNotAllowed          405 method_not_allowed
    ├── RequestTimeout            408 request_timeout       (the HTTP layer's read deadline)
    ├── RequestTooLarge           413 request_too_large
    ├── RequestHeadTooLarge       431 request_too_large     (the HTTP layer's head limit)
    ├── UnsupportedMediaType      415 unsupported_media_type
    ├── ClientGone                499 client_disconnected   (the client left mid-body)
    ├── ClientTooSlow             499 client_too_slow       (took no bytes for the write timeout)
    ├── RateLimited               429 rate_limit_exceeded   (the gateway's limit; Retry-After)
    ├── BudgetExceeded            429 budget_exceeded       (Retry-After: the budget's reset)
    ├── PolicyFailed              500 policy_error          (a Python hook raised)
    ├── UpstreamRejected          4xx the provider's own type  (the provider refused the request)
    ├── UpstreamRateLimited       429 upstream_rate_limited (all failed, the last throttled)
    ├── UpstreamError             502 upstream_error
    ├── UpstreamUnavailable       503 upstream_unavailable  (every target's breaker is open)
    ├── UpstreamPoolExhausted     503 upstream_pool_exhausted (no free connection in time)
    ├── LimiterUnavailable        503 limiter_unavailable   (Redis down and fail_closed)
    ├── ShuttingDown              503 service_unavailable   (SIGTERM received: no new work)
    └── UpstreamTimeout           504 upstream_timeout      (also: the request deadline passed)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .state.limiter import Quota


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """The rule behind a refusal (or a shadow rule's would-be refusal), for body and headers.

    ``name`` is the rule's place in the config (``clients.acme.rate_limit.requests_per_minute``,
    ``policies.no-legacy``, ...); ``kind`` one of ``requests``, ``tokens``, ``budget``,
    ``policy``, ``cost_ceiling``; ``scope`` whom it counts (``client:acme``, ``request``);
    ``limit`` and ``remaining`` in ``unit``; ``reset_s`` seconds until it resets (``None``:
    it does not reset by itself); ``window_s`` the length of its window, if it has one.
    """

    name: str
    kind: str
    scope: str
    limit: float | None
    remaining: float
    unit: str
    reset_s: int | None
    window_s: int | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class UpstreamDetail:
    """A provider's own error, as it sent it (redacted of the provider's key).

    ``dialect`` is the provider's (``openai`` or ``anthropic``); ``body`` its
    whole error body; ``type``, ``code`` and ``param`` the fields SDKs read
    (Anthropic's errors have only a ``type``).
    """

    dialect: str
    body: dict[str, Any]
    message: str
    type: str | None = None
    code: str | None = None
    param: str | None = None


class GatewayError(Exception):
    status: int = 500
    type: str = "internal_error"
    # Set on refusals by a rule (limits, budgets, policies, the cost ceiling).
    rule: RuleInfo | None = None
    # True once the client's request limit accounts for the request (it was admitted, or
    # the limit itself refused it); a refusal of a known client that is not yet counted
    # is counted as it is answered, so refusals cannot be had for free.
    counted: bool = False
    # The client's quota when it was refused (its rate-limit headers), once known.
    quota: Quota | None = None
    # The scheme a 401 names in ``WWW-Authenticate``.
    challenge: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        # Seconds after which a retry may succeed (``Retry-After``), when known.
        self.retry_after_s = retry_after_s


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class UnsupportedField(InvalidRequest):
    """A request field that cannot be translated for the provider (or dialect) it goes to."""

    def __init__(self, who: str, field: str, reason: str) -> None:
        super().__init__(f"{field}: {who} cannot take it; {reason}.", param=field)


class PromptTooLarge(GatewayError):
    status = 400
    type = "prompt_too_large"


class ContentBlocked(GatewayError):
    status = 400
    type = "content_blocked"


class InvalidConfig(GatewayError):
    status = 400
    type = "invalid_config"


class CostCeilingExceeded(GatewayError):
    status = 400
    type = "cost_ceiling_exceeded"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"

    challenge = "Bearer"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_denied"


class ModelNotAllowed(GatewayError):
    status = 403
    type = "model_not_allowed"


class PolicyDenied(GatewayError):
    status = 403
    type = "policy_denied"


class RouteNotFound(GatewayError):
    status = 404
    type = "not_found"


class ModelNotFound(GatewayError):
    status = 404
    type = "model_not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "method_not_allowed"


class RequestTooLarge(GatewayError):
    status = 413
    type = "request_too_large"


class RequestTimeout(GatewayError):
    status = 408
    type = "request_timeout"


class RequestHeadTooLarge(GatewayError):
    status = 431
    type = "request_too_large"


class ClientGone(GatewayError):
    """The client closed the connection before its request body arrived."""

    status = 499
    type = "client_disconnected"


class ClientTooSlow(GatewayError):
    """The client took none of the answer for ``response_write_timeout_s``: cut, never shown."""

    status = 499
    type = "client_too_slow"


class UnsupportedMediaType(GatewayError):
    status = 415
    type = "unsupported_media_type"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, retry_after_s=retry_after_s)


class BudgetExceeded(GatewayError):
    status = 429
    type = "budget_exceeded"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, retry_after_s=retry_after_s)


class PolicyFailed(GatewayError):
    status = 500
    type = "policy_error"


class UpstreamRejected(GatewayError):
    """The provider refused the request itself (400, 413, 422): another target would too.

    ``detail`` is the provider's own error: its message, type, code and param
    reach the client (in the provider's body as sent when the client speaks
    the provider's dialect).
    """

    type = "invalid_request_error"

    def __init__(self, message: str, *, status: int, detail: UpstreamDetail | None = None) -> None:
        super().__init__(message, param=detail.param if detail is not None else None)
        self.status = status
        self.detail = detail
        if detail is not None and detail.type:
            self.type = detail.type


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"


class UpstreamRateLimited(GatewayError):
    """Every target failed and the last one was the provider throttling the gateway."""

    status = 429
    type = "upstream_rate_limited"


class UpstreamUnavailable(GatewayError):
    """Every target of the alias is cooling down after repeated failures (circuit open)."""

    status = 503
    type = "upstream_unavailable"


class UpstreamPoolExhausted(GatewayError):
    """Every target tried had all its ``max_connections`` in use for its ``pool_timeout_s``.

    The gateway's own connection cap, not the provider failing: no breaker counts it.
    """

    status = 503
    type = "upstream_pool_exhausted"


class LimiterUnavailable(GatewayError):
    """The shared limit store cannot be reached and ``state.on_error`` is ``fail_closed``."""

    status = 503
    type = "limiter_unavailable"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "upstream_timeout"


class ShuttingDown(GatewayError):
    """The gateway received SIGTERM: it finishes what it has and takes nothing new."""

    status = 503
    type = "service_unavailable"
