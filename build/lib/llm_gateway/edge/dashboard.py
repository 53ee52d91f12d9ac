"""The operator's live views over HTTP: ``/metrics``, ``/dashboard`` and ``/dashboard/data``.

All three are behind the admin key when one is set (``admin.AdminGuard``).
The dashboard is one self-contained page (``dashboard.html``: markup, style
and hand-written SVG chart code, nothing fetched from elsewhere, which its
Content-Security-Policy enforces) that polls ``/dashboard/data``, the
rolling aggregate's snapshot.
"""

from __future__ import annotations

from pathlib import Path

import anyio
from starlette.requests import Request
from starlette.responses import Response

from ..errors import InvalidRequest
from ..observability.metrics import Metrics
from ..observability.rolling import WINDOWS, Rolling
from .admin import AdminGuard
from .wire import json_response

PAGE = (Path(__file__).parent / "dashboard.html").read_bytes()
_PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
    ),
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
}


async def metrics_endpoint(request: Request) -> Response:
    guard: AdminGuard = request.app.state.admin
    guard.check_view(request)
    metrics: Metrics = request.app.state.metrics
    # Rendering walks every series (and, with several workers, reads their files): off the loop.
    body, content_type = await anyio.to_thread.run_sync(
        metrics.render, request.headers.get("accept")
    )
    return Response(body, headers={"content-type": content_type})


async def dashboard_page(request: Request) -> Response:
    guard: AdminGuard = request.app.state.admin
    guard.check_view(request)
    return Response(PAGE, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


async def dashboard_data(request: Request) -> Response:
    guard: AdminGuard = request.app.state.admin
    guard.check_view(request)
    window = request.query_params.get("window", "hour")
    if window not in WINDOWS:
        raise InvalidRequest(
            f"window must be one of {', '.join(WINDOWS)}; got {window[:40]!r}.", param="window"
        )
    rolling: Rolling = request.app.state.rolling
    return json_response(rolling.snapshot(window), headers={"cache-control": "no-store"})
