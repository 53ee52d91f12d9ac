"""The shared limiter: both algorithms kept in Redis for every replica (``RedisState``).

Each admission, reconciliation and quota read is one Lua script run
atomically by Redis on the client's slot (the layout is in
``redis_scripts``); times come from the Redis server's clock. A
reconciliation that gives tokens back waits for the client's next call or the
flusher; one that takes more is sent at once (``RedisState.defer``).

Redis down: ``on_error`` ``fail_open`` admits (nothing counted, quota shown
whole); ``fail_closed`` refuses with ``exceeded="unavailable"`` (503). A
failed reconcile leaves the reservation to expire with the window.
"""

from __future__ import annotations

from ..joint import JointAdmission, Sequential
from ..redis_state import RedisState, Reservation
from ..spend import SpendStore
from ..spend.redis import RedisSpendStore
from . import Decision, Limits, Quota


class RedisLimiter:
    """``Limiter`` over a ``RedisState``."""

    def __init__(self, state: RedisState) -> None:
        self.state = state

    async def admit(self, client_id: str, limits: Limits, tokens: int) -> Decision:
        _, decision = await self.state.run_admit(client_id, limits, tokens, None, 0.0, False)
        assert decision is not None
        return decision

    async def reconcile(self, reservation: object, used_tokens: int) -> None:
        if not isinstance(reservation, Reservation):
            return  # no token limit, or admitted while Redis was down
        settlement = reservation.settlement(used_tokens)
        self.state.defer(reservation.tag, settlement, used_tokens > reservation.tokens)

    async def peek(self, client_id: str, limits: Limits) -> Quota:
        return await self.state.peek(client_id, limits)

    def joint(self, spend: SpendStore) -> JointAdmission:
        """One script call when ``spend`` keeps its spend in the same Redis."""
        if isinstance(spend, RedisSpendStore) and spend.state is self.state:
            return self.state
        return Sequential(self, spend)
