"""Which targets answer a request: routing rules, then the alias's targets in the order to try.

``Router.resolve`` applies the ``routes`` rules (first match wins) or takes
the model the client asked for as the alias. ``Route.plan`` orders the alias's
targets for one request: a single target as configured; several by weight
among the healthy ones, or cheapest first (``strategy: cheapest``); then the
fallbacks in order. Everything that can be is computed at start-up.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

from ..config import AliasConfig, GatewayConfig, RetryConfig
from ..errors import ModelNotFound
from ..observability.telemetry import CircuitListener
from ..pipeline.cost import PriceTable, ceiling_cost
from .balance import cheapest_order, weighted_order
from .breaker import Breaker, now
from .rules import Rules


@dataclass(frozen=True, slots=True)
class Target:
    provider: str
    model: str
    breaker: Breaker = field(compare=False, repr=False)

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model}"


class Route:
    """One alias: its target group, its fallbacks, and its deadline and retry settings."""

    def __init__(
        self,
        name: str,
        spec: AliasConfig,
        config: GatewayConfig,
        breakers: dict[tuple[str, str], Breaker],
        prices: PriceTable,
        on_circuit: CircuitListener | None,
    ) -> None:
        def target(provider: str, model: str) -> Target:
            key = (provider, model)
            if key not in breakers:
                tell = partial(on_circuit, provider, model) if on_circuit is not None else None
                spec = config.breaker
                breakers[key] = Breaker(spec.failure_threshold, spec.cooldown_s, tell)
            return Target(provider, model, breakers[key])

        self.name = name
        self.group = tuple(target(t.provider, t.model) for t in spec.primary())
        self.weights = tuple(t.weight for t in spec.primary())
        self.fallbacks = tuple(target(t.provider, t.model) for t in spec.fallbacks)
        self.cheapest = spec.strategy == "cheapest" and len(self.group) > 1
        self.deadline_s = spec.deadline_s if spec.deadline_s is not None else config.deadline_s
        self.retry: RetryConfig = spec.retry or config.retry
        self.queue_timeout_s = spec.queue_timeout_ms / 1000 if spec.queue_timeout_ms else None
        self._prices = tuple(prices.price(t.provider, t.model) for t in self.group)
        # One target in the group: the order never changes.
        self._fixed = (*self.group, *self.fallbacks) if len(self.group) == 1 else None

    def plan(self, prompt: int, completion: int, rng: random.Random) -> Sequence[Target]:
        """The targets to try for one request, in order (open breakers are skipped later)."""
        if self._fixed is not None:
            return self._fixed
        if self.cheapest:
            costs = [
                math.inf if p is None else ceiling_cost(p, prompt, completion) for p in self._prices
            ]
            ordered = cheapest_order(self.group, costs)
        else:
            moment = now()
            healthy = [t.breaker.available(moment) for t in self.group]
            ordered = weighted_order(self.group, self.weights, healthy, rng)
        return (*ordered, *self.fallbacks)


class Router:
    """``on_circuit(provider, model, state)`` is told of every breaker's state changes."""

    def __init__(
        self, config: GatewayConfig, prices: PriceTable, on_circuit: CircuitListener | None = None
    ) -> None:
        self.breakers: dict[tuple[str, str], Breaker] = {}
        self._routes = {
            alias: Route(alias, spec, config, self.breakers, prices, on_circuit)
            for alias, spec in config.aliases.items()
        }
        self._rules = Rules(config.routes)
        self.rng = random.Random()

    @property
    def aliases(self) -> list[str]:
        return list(self._routes)

    def resolve(
        self, model: str, client: str, use_case: str | None, prompt: int
    ) -> tuple[Route, str | None]:
        """The route for a request and the name of the rule that chose it (``None``: no rule).

        Raises ``ModelNotFound`` when no rule matches and ``model`` is not an alias.
        """
        if self._rules:
            rule = self._rules.first(model, client, use_case, prompt)
            if rule is not None:
                return self._routes[rule.alias], rule.name
        try:
            return self._routes[model], None
        except KeyError:
            raise ModelNotFound(
                f"The model {model[:100]!r} does not exist."
                f" Known models: {', '.join(self._routes)}.",
                param="model",
            ) from None

    def rules_report(
        self, model: str, client: str, use_case: str | None, prompt: int
    ) -> list[dict[str, object]]:
        """Every routing rule, in order, and whether it matches a request."""
        return self._rules.report(model, client, use_case, prompt)

    def health(self) -> list[dict[str, object]]:
        """Every target's breaker, for ``/healthz?verbose=1``."""
        moment = now()
        return [
            {"provider": provider, "model": model, **breaker.report(moment)}
            for (provider, model), breaker in self.breakers.items()
        ]
