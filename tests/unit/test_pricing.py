"""The price table: per provider model, USD per million tokens."""

from __future__ import annotations

import pytest

from src.config import ConfigError
from src.pipeline.cost import PriceTable
from src.providers import Usage
from tests.support.configs import make_config


def test_cost_is_tokens_times_price_per_million(tmp_path):
    config = make_config(
        tmp_path,
        pricing={"primary": {"up-model-a": {"input_usd_per_mtok": 2.5, "output_usd_per_mtok": 10}}},
    )
    table = PriceTable(config)
    assert table.cost_usd("primary", "up-model-a", Usage(1000, 500)) == pytest.approx(0.0075)
    assert table.cost_usd("primary", "other", Usage(1000, 500)) is None


def test_pricing_for_an_unknown_provider_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"pricing\.ghost"):
        make_config(
            tmp_path, pricing={"ghost": {"m": {"input_usd_per_mtok": 1, "output_usd_per_mtok": 1}}}
        )
