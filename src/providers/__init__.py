"""Provider adapters, and the set of them the gateway opens at start-up.

``Providers`` owns one pooled ``httpx.AsyncClient`` per provider that has a key
(or needs none) and closes them all in ``aclose``. The transport behind those
clients is aiohttp's (``httpx-aiohttp``): it keeps httpx's interface while its
connection pool holds up under concurrency where httpx's default one does not.
A different transport can be passed in (``httpx.MockTransport``, a respx
router) and is then used for every provider.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
from httpx_aiohttp import AiohttpTransport

from ..config import GatewayConfig, ProviderConfig
from .base import AttemptFailed, ChunkStream, Provider, Usage
from .openai import OpenAIProvider
from .stub import STUB_TEXT, StubProvider

__all__ = [
    "STUB_TEXT",
    "AttemptFailed",
    "ChunkStream",
    "Provider",
    "Providers",
    "TransportFactory",
    "Usage",
]

TransportFactory = Callable[[ProviderConfig], httpx.AsyncBaseTransport]


def aiohttp_transport(spec: ProviderConfig) -> httpx.AsyncBaseTransport:
    limits = httpx.Limits(max_connections=spec.max_connections, keepalive_expiry=30)
    return AiohttpTransport(limits=limits, trust_env=False)


class Providers:
    def __init__(self, config: GatewayConfig, transport: TransportFactory | None = None) -> None:
        make_transport = transport or aiohttp_transport
        self._clients: list[httpx.AsyncClient] = []
        self._by_name: dict[str, Provider] = {}
        for name, spec in config.providers.items():
            if spec.stub:
                self._by_name[name] = StubProvider(name)
                continue
            client = httpx.AsyncClient(
                base_url=spec.base_url.rstrip("/") + "/",
                transport=make_transport(spec),
                timeout=spec.timeout_s,
                follow_redirects=False,
                trust_env=False,
            )
            self._clients.append(client)
            self._by_name[name] = OpenAIProvider(name, client, spec.api_key(), spec.timeout_s)

    def __getitem__(self, name: str) -> Provider:
        return self._by_name[name]

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()
