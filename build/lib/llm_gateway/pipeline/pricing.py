"""What a call costs: the config's price table applied to token counts."""

from __future__ import annotations

from ..config import GatewayConfig, PriceConfig

_PER_MTOK = 1_000_000


class PriceTable:
    def __init__(self, config: GatewayConfig) -> None:
        self._prices: dict[tuple[str, str], PriceConfig] = {
            (provider, model): price
            for provider, models in config.pricing.items()
            for model, price in models.items()
        }

    def price(self, provider: str, model: str) -> PriceConfig | None:
        return self._prices.get((provider, model))

    def cost_usd(
        self, provider: str, model: str, prompt_tokens: int, completion_tokens: int
    ) -> float | None:
        """The cost of one call, or ``None`` when the model has no price."""
        price = self._prices.get((provider, model))
        if price is None:
            return None
        return (
            prompt_tokens * price.input_usd_per_mtok + completion_tokens * price.output_usd_per_mtok
        ) / _PER_MTOK
