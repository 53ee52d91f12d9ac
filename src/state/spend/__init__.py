"""What each client has spent, per UTC day and per UTC month, and the budget check.

``SpendStore`` is the seam, shaped like the limiter's: ``admit`` checks a
client's budget and holds an estimate of the request's cost in one atomic
step; ``settle`` replaces the hold with the real cost when the answer ends.
Holding the estimate is what stops a burst of concurrent requests from all
passing a budget that only the first of them fits in, while a client that
sends one request at a time is refused exactly when its spend has reached the
budget. ``MemorySpendStore`` keeps the totals in this process and records
every charge in a ledger file so they survive a restart; ``RedisSpendStore``
keeps them in a Redis every replica shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ...config import BudgetConfig


@dataclass(frozen=True, slots=True)
class Spend:
    """USD spent in the current UTC day and month, including holds of requests in flight."""

    day_usd: float
    month_usd: float
    held_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class BudgetDecision:
    """The outcome of ``admit``; when refused, ``exceeded`` names the budget field reached.

    ``spend`` is the client's spend with the estimates in flight; its ``held_usd`` (what
    is in flight) is exact with a refusal, which quotes it, while a shared store leaves it
    0 on an admission rather than read every hold of the client for it.
    """

    allowed: bool
    spend: Spend
    exceeded: str | None = None
    hold: object = None


class SpendStore(Protocol):
    async def admit(
        self, client_id: str, budget: BudgetConfig | None, estimate_usd: float
    ) -> BudgetDecision:
        """Refuse when the client's day or month spend (holds included) has reached the budget;
        otherwise hold ``estimate_usd``. Check and hold are one atomic step. Without a budget
        nothing is refused, and the hold still counts toward the spend.
        """
        ...

    async def settle(self, hold: object, cost_usd: float) -> None:
        """Release the hold of one admission and charge ``cost_usd`` (to the current day and
        month; a shared store charges the admission's day and month). Call exactly once per
        admission. A shared store may apply a settlement that costs no more than its hold a
        little later: until then the spend shows the hold, never less."""
        ...

    async def spent(self, client_id: str) -> Spend:
        """The client's spend now, counting nothing."""
        ...

    async def aclose(self) -> None:
        """Flush what is recorded and release the store."""
        ...
