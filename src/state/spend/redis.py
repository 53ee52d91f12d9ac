"""The shared spend store: each client's spend per UTC day and month, in Redis.

The keys are laid out in ``redis_scripts``: the day's and the month's USD
(charged at admission with the request's estimate, corrected by the real cost
at settlement) and the holds of requests in flight. The budget check and the
hold are one atomic script (``RedisState``), so replicas cannot all pass a
budget only one request fits in; the day and month come from the Redis
server's ``TIME``, so every replica rolls over at the same instant. Spend
survives gateway restarts as long as Redis keeps its data (enable persistence
for budgets). A gateway that dies leaves its requests' estimates charged.

Redis down: ``fail_open`` admits without a hold and a failed charge is lost;
``fail_closed`` refuses with 503 ``limiter_unavailable``.
"""

from __future__ import annotations

from ...config import BudgetConfig
from ..redis_state import Hold, RedisState
from . import BudgetDecision, Spend


class RedisSpendStore:
    """``SpendStore`` over a ``RedisState``."""

    def __init__(self, state: RedisState) -> None:
        self.state = state

    async def admit(
        self, client_id: str, budget: BudgetConfig | None, estimate_usd: float
    ) -> BudgetDecision:
        verdict, _ = await self.state.run_admit(client_id, None, 0, budget, estimate_usd, True)
        return verdict

    async def settle(self, hold: object, cost_usd: float) -> None:
        if not isinstance(hold, Hold):
            return  # admitted while Redis was down: nothing was held
        self.state.defer(hold.tag, hold.settlement(cost_usd), cost_usd > hold.estimate)

    async def spent(self, client_id: str) -> Spend:
        return await self.state.spent(client_id)

    async def aclose(self) -> None:
        """Nothing of its own: the ``RedisState`` is closed by its owner."""
