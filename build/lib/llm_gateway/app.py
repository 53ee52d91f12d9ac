"""The gateway's ASGI app, for ``uvicorn src.app:app`` from the repository root.

``app`` is built on first access, from the config ``GATEWAY_CONFIG`` names (else
``config/example.config.json``): importing this module reads no file and builds
nothing. ``llm-gateway serve`` is the console command; it also runs the gateway's
own HTTP layer (``src.edge.protocol.GatewayProtocol``), which plain ``uvicorn``
runs only when given ``--http src.edge.protocol:GatewayProtocol``.
"""

from __future__ import annotations

from .edge.app import GatewayApp, app_from_environment, create_app

__all__ = ["GatewayApp", "app", "create_app"]

app: GatewayApp


def __getattr__(name: str) -> GatewayApp:
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    built = globals()["app"] = app_from_environment()
    return built
