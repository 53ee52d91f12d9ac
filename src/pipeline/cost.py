"""What a call costs: the one cost formula, the config's price table, and price quotes.

The cost of an answer is its real usage at the price of the provider model
that answered. Input tokens read from the provider's prompt cache are charged
at ``cached_input_usd_per_mtok``, those written to it at
``cache_write_usd_per_mtok`` (each the input rate when unset), the rest of the
input at ``input_usd_per_mtok``; every output token, reasoning included, at
``output_usd_per_mtok``. A model with no price has no cost (``None``:
reported as unknown, counted as nothing against a budget).

A quote prices the approximate prompt plus the completion the request may
produce (its ``max_tokens``, else the client's cap, else the reservation
default) on every target of the route, primary group then fallbacks, before
any call. It is a ceiling: the prompt is priced at the dearest of the input
rates, since the gateway cannot know beforehand how much of it the provider
will read from or write to its cache. Its ``low`` and ``high`` are the
cheapest and dearest priced targets; targets without a price are left out
of both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import GatewayConfig, PriceConfig
from ..providers.base import Usage

if TYPE_CHECKING:  # the router prices its targets with this module's table
    from ..routing import Route, Target

_PER_MTOK = 1_000_000


def usage_cost(price: PriceConfig, usage: Usage) -> float:
    """The cost of ``usage`` at ``price``: the gateway's one cost formula."""
    cached = price.cached_input_usd_per_mtok
    write = price.cache_write_usd_per_mtok
    return (
        usage.uncached_prompt_tokens * price.input_usd_per_mtok
        + usage.cache_read_tokens * (price.input_usd_per_mtok if cached is None else cached)
        + usage.cache_write_tokens * (price.input_usd_per_mtok if write is None else write)
        + usage.completion_tokens * price.output_usd_per_mtok
    ) / _PER_MTOK


def ceiling_cost(price: PriceConfig, prompt_tokens: int, completion_tokens: int) -> float:
    """The most ``prompt_tokens`` in and ``completion_tokens`` out can cost at ``price``."""
    rates = (
        price.input_usd_per_mtok,
        price.cached_input_usd_per_mtok,
        price.cache_write_usd_per_mtok,
    )
    prompt_rate = max(rate for rate in rates if rate is not None)
    return (prompt_tokens * prompt_rate + completion_tokens * price.output_usd_per_mtok) / _PER_MTOK


class PriceTable:
    def __init__(self, config: GatewayConfig) -> None:
        self._prices: dict[tuple[str, str], PriceConfig] = {
            (provider, model): price
            for provider, models in config.pricing.items()
            for model, price in models.items()
        }

    def price(self, provider: str, model: str) -> PriceConfig | None:
        return self._prices.get((provider, model))

    def cost_usd(self, provider: str | None, model: str | None, usage: Usage) -> float | None:
        """The cost of one answer; ``None`` when the model has no price."""
        if provider is None or model is None:
            return None
        price = self._prices.get((provider, model))
        return None if price is None else usage_cost(price, usage)

    def ceiling_usd(
        self, provider: str, model: str, prompt_tokens: int, completion_tokens: int
    ) -> float | None:
        """The most a call can cost (``ceiling_cost``); ``None`` when the model has no price."""
        price = self._prices.get((provider, model))
        return None if price is None else ceiling_cost(price, prompt_tokens, completion_tokens)


def format_usd(usd: float) -> str:
    """A cost as the header carries it: plain decimal, at most 10 places, no exponent."""
    if not usd:
        return "0"
    return f"{usd:.10f}".rstrip("0").rstrip(".") or "0"


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
        TargetCost(
            target, role, prices.ceiling_usd(target.provider, target.model, prompt, completion)
        )
        for role, targets in (("primary", route.group), ("fallback", route.fallbacks))
        for target in targets
    )
    return Quote(prompt, completion, costs)
