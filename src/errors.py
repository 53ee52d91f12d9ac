"""The gateway's one error hierarchy.

Every refusal or failure a client can see is a ``GatewayError``: it carries the
HTTP status, the error ``type`` of the envelope, a message that is safe to show
(never a key), and optional extra response headers. ``app`` renders it in the
caller's dialect; nothing else builds error bodies.

    GatewayError
    ├── InvalidRequest            400 invalid_request_error
    ├── PromptTooLarge            400 prompt_too_large
    ├── RouteNotFound             404 not_found
    ├── ModelNotFound             404 model_not_found
    ├── MethodNotAllowed          405 method_not_allowed
    ├── RequestTooLarge           413 request_too_large
    ├── UnsupportedMediaType      415 unsupported_media_type
    ├── RateLimited               429 rate_limit_exceeded   (the gateway's limit; Retry-After)
    ├── UpstreamRejected          4xx invalid_request_error (the provider refused the request)
    ├── UpstreamRateLimited       429 upstream_rate_limited (all failed, the last throttled)
    ├── UpstreamError             502 upstream_error
    ├── LimiterUnavailable        503 limiter_unavailable   (Redis down and fail_closed)
    └── UpstreamTimeout           504 upstream_timeout
"""

from __future__ import annotations


class GatewayError(Exception):
    status: int = 500
    type: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or {}


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class PromptTooLarge(GatewayError):
    status = 400
    type = "prompt_too_large"


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


class UnsupportedMediaType(GatewayError):
    status = 415
    type = "unsupported_media_type"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, headers={"retry-after": str(retry_after_s)})
        self.retry_after_s = retry_after_s


class UpstreamRejected(GatewayError):
    """The provider refused the request itself (400, 413, 422): another target would too."""

    type = "invalid_request_error"

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"


class UpstreamRateLimited(GatewayError):
    """Every target failed and the last one was the provider throttling the gateway."""

    status = 429
    type = "upstream_rate_limited"


class LimiterUnavailable(GatewayError):
    """The shared limit store cannot be reached and ``state.on_error`` is ``fail_closed``."""

    status = 503
    type = "limiter_unavailable"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "upstream_timeout"
