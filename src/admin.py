"""The operator's routes' guard: the admin key from ``GATEWAY_ADMIN_KEY``.

When the variable is set (read once at start-up), ``/metrics``, ``/dashboard``
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

from .errors import AdminUnauthorized

ADMIN_KEY_ENV = "GATEWAY_ADMIN_KEY"
CHALLENGE = {"www-authenticate": 'Basic realm="gateway admin", charset="UTF-8"'}


class AdminGuard:
    def __init__(self) -> None:
        key = os.environ.get(ADMIN_KEY_ENV) or None
        self._key = key.encode() if key is not None else None

    def check(self, request: Request) -> None:
        """Raise ``AdminUnauthorized`` unless the request carries the admin key (or none is set)."""
        if self._key is None:
            return
        given = _credential(request.headers.get("authorization", ""))
        if given is None or not hmac.compare_digest(given, self._key):
            raise AdminUnauthorized(
                f"This route needs the admin key ({ADMIN_KEY_ENV}) as a Bearer token.",
                headers=dict(CHALLENGE),
            )


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
