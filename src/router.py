"""Model alias to the ordered upstream targets that may answer it."""

from __future__ import annotations

from dataclasses import dataclass

from .config import GatewayConfig
from .errors import ModelNotFound


@dataclass(frozen=True, slots=True)
class Target:
    provider: str
    model: str


class Router:
    def __init__(self, config: GatewayConfig) -> None:
        self._routes: dict[str, tuple[Target, ...]] = {
            alias: tuple(Target(t.provider, t.model) for t in spec.targets())
            for alias, spec in config.aliases.items()
        }

    @property
    def aliases(self) -> list[str]:
        return list(self._routes)

    def targets(self, alias: str) -> tuple[Target, ...]:
        """The primary target first, then the fallbacks; ``ModelNotFound`` for an unknown alias."""
        try:
            return self._routes[alias]
        except KeyError:
            raise ModelNotFound(
                f"The model {alias[:100]!r} does not exist."
                f" Known models: {', '.join(self._routes)}.",
                param="model",
            ) from None
