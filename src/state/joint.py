"""One admission over the limiter and the spend store together.

A keyed client's request holds its estimated cost against the budget and
counts against the rate limits (reserving its tokens). ``JointAdmission``
does both as one atomic step: the budget is checked first, then the limits;
a refusal by either counts and holds nothing. ``Limiter.joint(spend)`` gives
the pair's implementation: with both in one Redis it is one script call
(``RedisState``); otherwise ``Sequential`` calls one after the other, which is
atomic in memory because neither awaits anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..config import BudgetConfig
from .limiter import Decision, Limiter, Limits
from .spend import BudgetDecision, SpendStore


@dataclass(frozen=True, slots=True)
class Claim:
    """What one request of a client asks of the state: a count against its ``limits`` with
    ``tokens`` reserved, and ``estimate_usd`` held against its ``budget``."""

    client_id: str
    limits: Limits
    tokens: int
    budget: BudgetConfig | None
    estimate_usd: float


class JointAdmission(Protocol):
    async def admit(self, claim: Claim) -> tuple[BudgetDecision, Decision | None]:
        """The budget's verdict and the limiter's decision, taken as one step.

        Over budget: ``(refusal, None)``, the limits not consulted. Over a limit:
        ``(verdict without a hold, refusal)``. Both pass: the hold and the reservation are
        both taken. Raises what ``SpendStore.admit`` raises (a store that is down and
        set to fail closed).
        """
        ...


class Sequential:
    """``JointAdmission`` as the spend store's admission, then the limiter's."""

    def __init__(self, limiter: Limiter, spend: SpendStore) -> None:
        self._limiter = limiter
        self._spend = spend

    async def admit(self, claim: Claim) -> tuple[BudgetDecision, Decision | None]:
        verdict = await self._spend.admit(claim.client_id, claim.budget, claim.estimate_usd)
        if not verdict.allowed:
            return verdict, None
        decision = await self._limiter.admit(claim.client_id, claim.limits, claim.tokens)
        if not decision.allowed and verdict.hold is not None:
            await self._spend.settle(verdict.hold, 0.0)
            verdict = BudgetDecision(True, verdict.spend)
        return verdict, decision
