"""Price quotes: what a request may cost on each target of its route, before any call.

A quote prices the approximate prompt plus the completion the request may
produce (its ``max_tokens``, else the client's cap, else the reservation
default) on every target of the route, primary group then fallbacks. Its
``low`` and ``high`` are the cheapest and dearest priced targets; targets
without a price have no cost and are left out of both.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..routing import Route, Target
from .accounting import format_usd
from .pricing import PriceTable


@dataclass(frozen=True, slots=True)
class TargetCost:
    target: Target
    role: str  # "primary" or "fallback"
    cost_usd: float | None


@dataclass(frozen=True, slots=True)
class Quote:
    prompt_tokens: int
    completion_tokens: int
    targets: tuple[TargetCost, ...]

    @property
    def priced(self) -> list[float]:
        return [t.cost_usd for t in self.targets if t.cost_usd is not None]

    @property
    def low_usd(self) -> float | None:
        return min(self.priced, default=None)

    @property
    def high_usd(self) -> float | None:
        return max(self.priced, default=None)

    def within(self, ceiling_usd: float) -> tuple[Target, ...]:
        """The targets whose cost is known and at most ``ceiling_usd``, in route order."""
        return tuple(
            t.target for t in self.targets if t.cost_usd is not None and t.cost_usd <= ceiling_usd
        )

    def describe(self) -> str:
        """The quote in words, for messages."""
        low, high = self.low_usd, self.high_usd
        tokens = f"{self.prompt_tokens} prompt and up to {self.completion_tokens} completion tokens"
        if low is None or high is None:
            return f"unknown (no target has a price; {tokens})"
        unpriced = len(self.targets) - len(self.priced)
        extra = f"; {unpriced} target(s) without a price" if unpriced else ""
        span = f"${format_usd(low)}"
        if high != low:
            span += f" to ${format_usd(high)}"
        return f"{span} ({tokens}{extra})"

    def as_dict(self) -> dict[str, object]:
        return {
            "currency": "USD",
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "low_usd": self.low_usd,
            "high_usd": self.high_usd,
            "targets": [
                {
                    "provider": t.target.provider,
                    "model": t.target.model,
                    "role": t.role,
                    "cost_usd": t.cost_usd,
                }
                for t in self.targets
            ],
        }


def quote(route: Route, prices: PriceTable, prompt: int, completion: int) -> Quote:
    costs = tuple(
        TargetCost(target, role, prices.cost_usd(target.provider, target.model, prompt, completion))
        for role, targets in (("primary", route.group), ("fallback", route.fallbacks))
        for target in targets
    )
    return Quote(prompt, completion, costs)
