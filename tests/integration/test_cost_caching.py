"""Cost with prompt caching: each dialect's usage read in one shape, each part at its rate."""

from __future__ import annotations

import pytest

from src.config import PriceConfig
from src.pipeline.cost import ceiling_cost, usage_cost
from src.providers import Usage
from src.providers.operations import CHAT, MESSAGES, RESPONSES

PRICE = PriceConfig(
    input_usd_per_mtok=3,
    output_usd_per_mtok=15,
    cached_input_usd_per_mtok=0.3,
    cache_write_usd_per_mtok=3.75,
)


def test_anthropic_usage_counts_cache_reads_and_writes_as_input():
    usage = MESSAGES.usage(
        {
            "usage": {
                "input_tokens": 25,
                "cache_read_input_tokens": 5,
                "cache_creation_input_tokens": 100,
                "output_tokens": 40,
            }
        }
    )
    assert usage == Usage(130, 40, cache_read_tokens=5, cache_write_tokens=100)
    assert usage_cost(PRICE, usage) == pytest.approx(
        (25 * 3 + 5 * 0.3 + 100 * 3.75 + 40 * 15) / 1e6
    )


def test_openai_cached_and_reasoning_tokens_are_read_from_both_apis():
    chat = CHAT.usage(
        {
            "usage": {
                "prompt_tokens": 100,
                "completion_tokens": 50,
                "prompt_tokens_details": {"cached_tokens": 60},
                "completion_tokens_details": {"reasoning_tokens": 30},
            }
        }
    )
    responses = RESPONSES.usage(
        {
            "usage": {
                "input_tokens": 100,
                "input_tokens_details": {"cached_tokens": 60},
                "output_tokens": 50,
                "output_tokens_details": {"reasoning_tokens": 30},
            }
        }
    )
    assert chat == responses == Usage(100, 50, cache_read_tokens=60, reasoning_tokens=30)
    # reasoning is output: 40 fresh + 60 cached in, 50 out
    assert usage_cost(PRICE, chat) == pytest.approx((40 * 3 + 60 * 0.3 + 50 * 15) / 1e6)


def test_unset_cache_rates_are_the_input_rate():
    plain = PriceConfig(input_usd_per_mtok=2, output_usd_per_mtok=8)
    cached = Usage(100, 10, cache_read_tokens=50, cache_write_tokens=20)
    assert usage_cost(plain, cached) == usage_cost(plain, Usage(100, 10))


def test_the_ceiling_prices_the_prompt_at_the_dearest_input_rate():
    # a cache write costs more than plain input: the quote must not under-estimate it
    assert ceiling_cost(PRICE, 1000, 100) == pytest.approx((1000 * 3.75 + 100 * 15) / 1e6)
    for usage in (Usage(1000, 100), Usage(1000, 100, cache_write_tokens=1000)):
        assert usage_cost(PRICE, usage) <= ceiling_cost(PRICE, 1000, 100)


def test_message_delta_usage_is_cumulative_and_keeps_the_input_counts():
    start = MESSAGES.stream_usage(
        {
            "type": "message_start",
            "message": {
                "usage": {"input_tokens": 25, "cache_read_input_tokens": 5, "output_tokens": 1}
            },
        },
        None,
    )
    end = MESSAGES.stream_usage({"type": "message_delta", "usage": {"output_tokens": 40}}, start)
    assert end == Usage(30, 40, cache_read_tokens=5)
