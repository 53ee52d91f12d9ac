"""Spend by day and month: rolled over at UTC midnight and month start, rebuilt from the ledger."""

from __future__ import annotations

import calendar
import json

import pytest

from src.config import BudgetConfig
from src.state.spend import Spend
from src.state.spend.ledger import Ledger
from src.state.spend.memory import MemorySpendStore


async def test_spend_rolls_over_at_utc_midnight_and_month_start(tmp_path):
    now = [calendar.timegm((2026, 1, 31, 23, 59, 0))]
    store = await MemorySpendStore.open(tmp_path / "ledger", clock=lambda: now[0])
    budget = BudgetConfig(usd_per_day=1.0, usd_per_month=10.0)
    first = await store.admit("c", budget, 0.0)
    await store.settle(first.hold, 1.0)
    assert (await store.admit("c", budget, 0.0)).exceeded == "usd_per_day"
    now[0] += 120  # 2026-02-01 00:01 UTC: a new day and a new month
    assert await store.spent("c") == Spend(0.0, 0.0)
    assert (await store.admit("c", budget, 0.0)).allowed
    await store.aclose()


async def test_the_ledger_rebuilds_the_month_and_skips_damaged_lines(tmp_path):
    path = tmp_path / "spend.ledger"
    day = calendar.timegm((2026, 3, 10, 12, 0, 0))
    lines = [
        {"t": day - 40 * 86_400, "c": "a", "usd": 100.0},  # last month: dropped
        {"t": day - 86_400, "c": "a", "usd": 2.0},  # earlier this month
        {"t": day, "c": "a", "usd": 0.5},
        {"t": day, "c": "b", "usd": 0.25},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + '\n{"t": 1, "c": \n')
    store = await MemorySpendStore.open(path, clock=lambda: day + 60)
    spend = await store.spent("a")
    assert (spend.day_usd, spend.month_usd) == pytest.approx((0.5, 2.5))
    assert (await store.spent("b")).day_usd == pytest.approx(0.25)
    await store.aclose()
    assert len(path.read_text().splitlines()) == 3  # compacted: one line per client and day
    assert Ledger(path).fold(day + 60)["a"] == pytest.approx(
        {day // 86_400 - 1: 2.0, day // 86_400: 0.5}
    )
