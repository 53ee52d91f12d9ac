"""The operator's routes' guard: the admin key from the variable named by ``admin_key_env``.

When the variable (``GATEWAY_ADMIN_KEY`` by default) is set, read once at
start-up, ``/metrics``, ``/dashboard``
and ``/dashboard/data`` need ``Authorization: Bearer <key>``, or HTTP Basic
with the key as the password (the user name is ignored), which lets a browser
open the dashboard through its own password prompt. Unset, they are open. The
comparison takes constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os

from starlette.requests import Request

from ..config import GatewayConfig
from ..errors import AuthenticationFailed

CHALLENGE = {"www-authenticate": 'Basic realm="gateway admin", charset="UTF-8"'}


class AdminGuard:
    def __init__(self, config: GatewayConfig) -> None:
        self._env = config.admin_key_env
        key = os.environ.get(self._env) or None
        self._key = key.encode() if key is not None else None

    def check(self, request: Request) -> None:
        """Raise ``AuthenticationFailed`` unless the request has the admin key (or none is set)."""
        if self._key is None:
            return
        given = _credential(request.headers.get("authorization", ""))
        if given is None or not hmac.compare_digest(given, self._key):
            error = AuthenticationFailed(
                f"This route needs the admin key ({self._env}) as a Bearer token."
            )
            error.headers = dict(CHALLENGE)
            raise error


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
