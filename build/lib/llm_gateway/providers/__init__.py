"""Provider adapters, and the set of them the gateway opens at start-up.

``Providers`` owns one pooled httpx transport per provider that has a key (or
needs none) and closes them all in ``aclose``. The transport is the
provider's ``transport`` setting: ``Http1Transport`` (default), the gateway's
own HTTP/1.1 client, or ``AiohttpTransport``, httpx's interface over aiohttp.
Both hold up under concurrency where httpx's default pool does not. Tests pass
a factory that returns ``httpx.MockTransport`` (or a respx router's) instead.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from ..config import GatewayConfig, ProviderConfig
from .anthropic import AnthropicProvider
from .azure import AzureOpenAIProvider
from .base import AttemptFailed, Event, EventStream, Outbound, Provider, Reply, Usage
from .http1 import Http1Transport
from .openai import OpenAIProvider
from .stub import STUB_TEXT, StubProvider

__all__ = [
    "STUB_TEXT",
    "AttemptFailed",
    "Event",
    "EventStream",
    "Outbound",
    "Provider",
    "Providers",
    "Reply",
    "TransportFactory",
    "Usage",
    "configured_transport",
]

TransportFactory = Callable[[ProviderConfig], httpx.AsyncBaseTransport]


def configured_transport(spec: ProviderConfig) -> httpx.AsyncBaseTransport:
    if spec.transport == "aiohttp":
        from .transport import AiohttpTransport  # aiohttp costs ~85 ms of start-up: only on demand

        return AiohttpTransport(max_connections=spec.max_connections)
    return Http1Transport(max_connections=spec.max_connections)


class Providers:
    def __init__(self, config: GatewayConfig, transport: TransportFactory | None = None) -> None:
        make_transport = transport or configured_transport
        self._transports: list[httpx.AsyncBaseTransport] = []
        self._by_name: dict[str, Provider] = {}
        for name, spec in config.providers.items():
            if spec.stub:
                self._by_name[name] = StubProvider(name)
                continue
            pool = make_transport(spec)
            self._transports.append(pool)
            self._by_name[name] = _adapter(name, spec, pool)

    def __getitem__(self, name: str) -> Provider:
        return self._by_name[name]

    async def aclose(self) -> None:
        for transport in self._transports:
            await transport.aclose()


def _adapter(name: str, spec: ProviderConfig, pool: httpx.AsyncBaseTransport) -> Provider:
    if spec.type == "anthropic":
        return AnthropicProvider(
            name,
            pool,
            spec.base_url,
            spec.api_key(),
            spec.timeout_s,
            version=spec.anthropic_version,
            default_max_tokens=spec.default_max_tokens,
        )
    if spec.type == "azure":
        assert spec.api_version is not None  # the config requires it for azure
        return AzureOpenAIProvider(
            name, pool, spec.base_url, spec.api_key(), spec.timeout_s, spec.api_version
        )
    return OpenAIProvider(name, pool, spec.base_url, spec.api_key(), spec.timeout_s)
