"""Provider adapters, and the set of them the gateway opens at start-up.

``Providers`` owns one pooled httpx transport per provider that has a key (or
needs none) and closes them all in ``aclose``. The transport is the
provider's ``transport`` setting: ``Http1Transport`` (default), the gateway's
own HTTP/1.1 client, or ``AiohttpTransport``, httpx's interface over aiohttp.
Both hold up under concurrency where httpx's default pool does not, and both
cap the connections in use at ``max_connections``, telling the pool's
``PoolObserver`` (the metrics) what is in use and what waits. Tests pass a
factory that returns ``httpx.MockTransport`` (or a respx router's) instead.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from ..config import GatewayConfig, ProviderConfig
from .anthropic import AnthropicProvider
from .azure import AzureOpenAIProvider
from .base import AttemptFailed, Event, EventStream, Outbound, Provider, Reply, Usage
from .http import Bounds
from .http1 import Http1Transport
from .openai import OpenAIProvider
from .pool import PoolObserver
from .stub import STUB_TEXT, StubProvider

__all__ = [
    "STUB_TEXT",
    "AttemptFailed",
    "Event",
    "EventStream",
    "Outbound",
    "PoolObserver",
    "PoolObservers",
    "Provider",
    "Providers",
    "Reply",
    "TransportFactory",
    "Usage",
    "configured_transport",
]

TransportFactory = Callable[[ProviderConfig], httpx.AsyncBaseTransport]
# provider name -> the observer of its pool (the metrics')
PoolObservers = Callable[[str], PoolObserver]


def configured_transport(
    spec: ProviderConfig, observer: PoolObserver | None = None
) -> httpx.AsyncBaseTransport:
    if spec.transport == "aiohttp":
        from .transport import AiohttpTransport  # aiohttp costs ~85 ms of start-up: only on demand

        return AiohttpTransport(max_connections=spec.max_connections, observer=observer)
    return Http1Transport(max_connections=spec.max_connections, observer=observer)


class Providers:
    """The adapters of a config and the transports they send through.

    ``transport`` replaces the configured transports (tests); ``observers``
    gives each configured transport's pool its observer.
    """

    def __init__(
        self,
        config: GatewayConfig,
        transport: TransportFactory | None = None,
        observers: PoolObservers | None = None,
    ) -> None:
        self.observers = observers
        self._transports: list[httpx.AsyncBaseTransport] = []
        self._by_name: dict[str, Provider] = {}
        for name, spec in config.providers.items():
            if spec.stub:
                self._by_name[name] = StubProvider(name)
                continue
            if transport is not None:
                pool = transport(spec)
            else:
                pool = configured_transport(spec, observers(name) if observers else None)
            self._transports.append(pool)
            self._by_name[name] = _adapter(name, spec, pool)

    def __getitem__(self, name: str) -> Provider:
        return self._by_name[name]

    async def aclose(self) -> None:
        for transport in self._transports:
            await transport.aclose()


def _adapter(name: str, spec: ProviderConfig, pool: httpx.AsyncBaseTransport) -> Provider:
    bounds = Bounds(spec.max_response_bytes, spec.max_event_bytes, spec.pool_timeout_s)
    if spec.type == "anthropic":
        return AnthropicProvider(
            name,
            pool,
            spec.base_url,
            spec.api_key(),
            spec.timeout_s,
            version=spec.anthropic_version,
            default_max_tokens=spec.default_max_tokens,
            bounds=bounds,
        )
    if spec.type == "azure":
        assert spec.api_version is not None  # the config requires it for azure
        return AzureOpenAIProvider(
            name, pool, spec.base_url, spec.api_key(), spec.timeout_s, spec.api_version, bounds
        )
    return OpenAIProvider(name, pool, spec.base_url, spec.api_key(), spec.timeout_s, bounds)
