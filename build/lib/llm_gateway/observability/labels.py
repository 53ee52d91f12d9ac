"""Bounded label values for metrics and the dashboard.

A label value never carries raw request input beyond a known set: an alias
the config does not define becomes ``unknown`` (a client may ask for any
model name), a request refused before its alias was read has ``none``, and
client ids keep their own value only for the first ``max_clients`` distinct
ids seen by this process; the rest share ``other``.
"""

from __future__ import annotations

from ..config import GatewayConfig

OTHER = "other"
UNKNOWN = "unknown"
NONE = "none"


def configured_targets(config: GatewayConfig) -> list[tuple[str, str]]:
    """Every (provider, model) some alias may call, once each, in config order."""
    seen: dict[tuple[str, str], None] = {}
    for spec in config.aliases.values():
        for _, target in spec.all_targets():
            seen[(target.provider, target.model)] = None
    return list(seen)


class Labels:
    def __init__(self, config: GatewayConfig) -> None:
        self._max_clients = config.metrics.max_clients
        self._clients: dict[str, str] = {}
        self._aliases = {alias: alias for alias in config.aliases}

    def client(self, client_id: str) -> str:
        label = self._clients.get(client_id)
        if label is not None:
            return label
        if len(self._clients) >= self._max_clients:
            return OTHER
        self._clients[client_id] = client_id
        return client_id

    def alias(self, alias: str | None) -> str:
        if alias is None:
            return NONE
        return self._aliases.get(alias, UNKNOWN)

    @staticmethod
    def provider(provider: str | None) -> str:
        return provider or NONE
