"""The admin guard: the one check of the admin key, for every operator route.

The key is the value of the environment variable the config's ``admin_key_env``
names (``GATEWAY_ADMIN_KEY`` by default), read when the guard is built: at
start-up and on every reload (the lifespan and the reloader build a new one).
A request presents it as ``Authorization: Bearer <key>`` or as the password of
HTTP Basic (the user name is ignored, so a browser can open the dashboard
through its own prompt). The presented key and the expected one are compared
as SHA-256 digests in constant time, so neither their content nor their length
shows in the time taken.

What a route does when no key is set is its own kind's rule:

- views (``/metrics``, ``/dashboard``, ``/dashboard/data``): open;
- control (``POST /admin/reload``): disabled, 403 ``permission_denied``;
- ``POST /v1/explain``: the admin's wider view is simply not available.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from starlette.requests import Request

from ..config import GatewayConfig
from ..errors import AuthenticationFailed, PermissionDenied

CHALLENGE = 'Basic realm="gateway admin", charset="UTF-8"'


class AdminGuard:
    def __init__(self, config: GatewayConfig) -> None:
        self.env = config.admin_key_env
        key = os.environ.get(self.env) or None
        self._digest = _digest(key.encode()) if key is not None else None

    @property
    def enabled(self) -> bool:
        """An admin key is set."""
        return self._digest is not None

    def is_admin(self, request: Request) -> bool:
        """The request carries the admin key (false when none is set)."""
        if self._digest is None:
            return False
        given = _credential(request.headers.get("authorization", ""))
        return given is not None and hmac.compare_digest(_digest(given), self._digest)

    def check_view(self, request: Request) -> None:
        """A view route: open without a key; with one, ``AuthenticationFailed`` unless given."""
        if self._digest is not None and not self.is_admin(request):
            raise self._refusal()

    def check_control(self, request: Request) -> None:
        """A control route: ``PermissionDenied`` without a key, ``AuthenticationFailed`` unless
        the request gives it."""
        if self._digest is None:
            raise PermissionDenied(
                f"The admin API is disabled: set the environment variable {self.env}."
            )
        if not self.is_admin(request):
            raise self._refusal()

    def _refusal(self) -> AuthenticationFailed:
        error = AuthenticationFailed(
            f"This route needs the admin key ({self.env}) as a Bearer token."
        )
        error.challenge = CHALLENGE
        return error


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def _credential(header: str) -> bytes | None:
    scheme, _, value = header.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer" and value:
        return value.encode()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
        _, colon, password = decoded.partition(b":")
        return password if colon else None
    return None
