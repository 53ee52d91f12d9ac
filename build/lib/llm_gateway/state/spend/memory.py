"""The in-process spend store: totals in a dictionary, charges in the ledger file.

Exact under concurrency in one process because the event loop runs ``admit``
without an ``await`` between the check and the hold. Several workers each
keep their own totals (and share the ledger file, so a restart sums them).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

from ...config import BudgetConfig
from . import BudgetDecision, Spend
from .ledger import Ledger, day_of, month_of


class _Account:
    __slots__ = ("day", "day_usd", "held", "month", "month_usd")

    def __init__(self, day: int, month: tuple[int, int]) -> None:
        self.day = day
        self.month = month
        self.day_usd = 0.0
        self.month_usd = 0.0
        self.held = 0.0

    def roll(self, now: float) -> None:
        """Start a new day (and month) at UTC midnight."""
        day = day_of(now)
        if day == self.day:
            return
        self.day, self.day_usd = day, 0.0
        month = month_of(now)
        if month != self.month:
            self.month, self.month_usd = month, 0.0

    def spend(self) -> Spend:
        return Spend(self.day_usd + self.held, self.month_usd + self.held, self.held)


class _Hold:
    __slots__ = ("account", "client_id", "usd")

    def __init__(self, client_id: str, account: _Account, usd: float) -> None:
        self.client_id = client_id
        self.account = account
        self.usd = usd


class MemorySpendStore:
    """``SpendStore`` over this process's memory and a ledger file. ``clock`` is Unix seconds."""

    def __init__(self, ledger: Ledger, clock: Callable[[], float] = time.time) -> None:
        self._ledger = ledger
        self._clock = clock
        self._accounts: dict[str, _Account] = {}

    @classmethod
    async def open(
        cls, path: str | os.PathLike[str], clock: Callable[[], float] = time.time
    ) -> MemorySpendStore:
        """A store holding the current month's spend from the ledger at ``path``."""
        store = cls(Ledger(path), clock)
        now = clock()
        totals = await asyncio.to_thread(store._ledger.fold, now)
        today, month = day_of(now), month_of(now)
        for client_id, days in totals.items():
            account = store._account(client_id, now)
            account.month_usd = sum(days.values())
            account.day_usd = days.get(today, 0.0)
            account.month = month
        return store

    async def admit(
        self, client_id: str, budget: BudgetConfig | None, estimate_usd: float
    ) -> BudgetDecision:
        account = self._account(client_id, self._clock())
        if budget is not None:
            spend = account.spend()
            if budget.usd_per_day is not None and spend.day_usd >= budget.usd_per_day:
                return BudgetDecision(False, spend, "usd_per_day")
            if budget.usd_per_month is not None and spend.month_usd >= budget.usd_per_month:
                return BudgetDecision(False, spend, "usd_per_month")
        account.held += estimate_usd
        return BudgetDecision(True, account.spend(), hold=_Hold(client_id, account, estimate_usd))

    async def settle(self, hold: object, cost_usd: float) -> None:
        if not isinstance(hold, _Hold):
            return
        account, now = hold.account, self._clock()
        account.held = max(0.0, account.held - hold.usd)
        hold.usd = 0.0
        if cost_usd <= 0:
            return
        account.roll(now)
        account.day_usd += cost_usd
        account.month_usd += cost_usd
        self._ledger.append(now, hold.client_id, cost_usd)

    async def spent(self, client_id: str) -> Spend:
        return self._account(client_id, self._clock()).spend()

    async def aclose(self) -> None:
        await asyncio.to_thread(self._ledger.close)

    def _account(self, client_id: str, now: float) -> _Account:
        account = self._accounts.get(client_id)
        if account is None:
            account = self._accounts[client_id] = _Account(day_of(now), month_of(now))
        else:
            account.roll(now)
        return account
