"""Waiting for capacity: a request over its rate limit waits, fairly, instead of a 429.

A client (or an alias) with ``queue_timeout_ms`` has its over-limit requests
wait here until the limiter admits them or the timeout passes (then the 429
they would have had). The queue sits above the ``Limiter`` protocol: it
retries ``admit``, so whatever the backend, the limit stays exact.

Fairness: each client has its own lane, first come first served. One
dispatcher serves the lanes in rounds: at most one admission per lane per
round, lanes of higher ``priority`` first, lanes of equal priority in round
robin (a lane that was served moves to the back). A refused lane is retried
at the limiter's ``retry_after_s``, or at once when this process frees
capacity (``notify``: a reservation reconciled); a shared backend (Redis) is
thus polled at the retry-after time. The queue is bounded (``max_length``
requests across all lanes: beyond it a request gets its 429 at once); a
request whose client leaves is removed from its lane at once.

Nothing here runs unless a request has been refused and may wait.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import Protocol

from ..state.limiter import Decision, Limiter, Limits, Quota


class QueueObserver(Protocol):
    def queue_length(self, length: int) -> None: ...

    def queue_outcome(self, outcome: str) -> None:
        """``admitted``, ``timed_out``, ``left`` (the client disconnected) or ``full``."""
        ...


class Waiting(Protocol):
    """What the gateway asks of a queue (``CapacityQueue``; replay's never waits)."""

    waiting: int

    def queued(self, client_id: str) -> bool: ...

    def notify(self, client_id: str) -> None: ...

    async def wait(
        self,
        client_id: str,
        limits: Limits,
        tokens: int,
        refused: Decision | None,
        *,
        timeout_s: float,
        priority: int,
        max_length: int,
    ) -> Decision: ...


class _Waiter:
    __slots__ = ("future", "last", "limits", "tokens")

    def __init__(self, limits: Limits, tokens: int, last: Decision | None) -> None:
        self.limits = limits
        self.tokens = tokens
        self.last = last
        self.future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()


class _Lane:
    __slots__ = ("client_id", "last", "next_try", "priority", "waiters")

    def __init__(self, client_id: str, priority: int) -> None:
        self.client_id = client_id
        self.priority = priority
        self.waiters: deque[_Waiter] = deque()
        self.next_try = 0.0
        self.last: Decision | None = None  # the lane's latest refusal


class CapacityQueue:
    """The waiting requests of this process, over ``limiter``."""

    def __init__(self, limiter: Limiter, observer: QueueObserver | None = None) -> None:
        self._limiter = limiter
        self._observer = observer
        self._lanes: dict[str, _Lane] = {}  # insertion order is the round-robin order
        self.waiting = 0
        self._wake: asyncio.Event | None = None
        self._dispatcher: asyncio.Task[None] | None = None

    def queued(self, client_id: str) -> bool:
        """Whether requests of ``client_id`` are waiting (a newcomer queues behind them)."""
        lane = self._lanes.get(client_id)
        return lane is not None and bool(lane.waiters)

    def notify(self, client_id: str) -> None:
        """Capacity of ``client_id`` may have freed: retry its lane now."""
        lane = self._lanes.get(client_id)
        if lane is not None and lane.waiters and self._wake is not None:
            lane.next_try = 0.0
            self._wake.set()

    async def wait(
        self,
        client_id: str,
        limits: Limits,
        tokens: int,
        refused: Decision | None,
        *,
        timeout_s: float,
        priority: int,
        max_length: int,
    ) -> Decision:
        """Wait until ``admit(client_id, limits, tokens)`` succeeds or ``timeout_s`` passes.

        ``refused`` is the refusal that sent it here (``None``: it queued behind earlier
        waiters without asking). Returns the admission, or the latest refusal.
        """
        lane = self._lanes.get(client_id)
        if self.waiting >= max_length:
            self._tell_outcome("full")
            return refused or await self._refusal(client_id, limits, lane)
        if lane is None:
            lane = self._lanes[client_id] = _Lane(client_id, priority)
        lane.priority = priority
        waiter = _Waiter(limits, tokens, refused)
        lane.waiters.append(waiter)
        self._changed(+1)
        self._start()
        try:
            async with asyncio.timeout(timeout_s):
                decision = await asyncio.shield(waiter.future)
            self._tell_outcome("admitted")
            return decision
        except TimeoutError:
            if waiter.future.done():  # admitted as the timeout passed
                self._tell_outcome("admitted")
                return waiter.future.result()
            self._tell_outcome("timed_out")
            return lane.last or waiter.last or await self._refusal(client_id, limits, lane)
        except asyncio.CancelledError:
            self._tell_outcome("left")
            if waiter.future.done():  # admitted as the client left: give the tokens back
                await self._limiter.reconcile(waiter.future.result().reservation, 0)
            raise
        finally:
            self._leave(lane, waiter)

    async def _refusal(self, client_id: str, limits: Limits, lane: _Lane | None) -> Decision:
        if lane is not None and lane.last is not None:
            return lane.last
        quota: Quota = await self._limiter.peek(client_id, limits)
        return Decision(False, quota, "requests", 1)

    def _leave(self, lane: _Lane, waiter: _Waiter) -> None:
        if not waiter.future.done():
            waiter.future.cancel()
            lane.waiters.remove(waiter)
            self._changed(-1)
        if not lane.waiters and self._lanes.get(lane.client_id) is lane:
            del self._lanes[lane.client_id]

    def _start(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch())

    async def _dispatch(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while self.waiting:
            self._wake.clear()
            served = await self._round(loop.time())
            if served:
                continue
            soonest = min(
                (lane.next_try for lane in self._lanes.values() if lane.waiters), default=math.inf
            )
            # every due lane was just refused, so the soonest retry is ahead: always a real wait
            delay = min(max(soonest - loop.time(), 0.001), 60.0)
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass
        self._dispatcher = None

    async def _round(self, now: float) -> bool:
        """One round over the due lanes; true when some request was admitted."""
        due = sorted(
            (lane for lane in self._lanes.values() if lane.waiters and lane.next_try <= now),
            key=lambda lane: -lane.priority,  # stable: equal priorities keep round-robin order
        )
        served = False
        for lane in due:
            if not lane.waiters:
                continue
            waiter = lane.waiters[0]
            decision = await self._limiter.admit(lane.client_id, waiter.limits, waiter.tokens)
            if not decision.allowed:
                waiter.last = lane.last = decision
                lane.next_try = now + max(decision.retry_after_s, 0.05)
                continue
            if waiter.future.done() or lane.waiters[0] is not waiter:
                # it left while admit ran: the admission is nobody's
                await self._limiter.reconcile(decision.reservation, 0)
                continue
            lane.waiters.popleft()
            self._changed(-1)
            waiter.future.set_result(decision)
            served = True
            # round robin: a served lane goes to the back of the order
            if self._lanes.get(lane.client_id) is lane:
                del self._lanes[lane.client_id]
                self._lanes[lane.client_id] = lane
        return served

    def _changed(self, delta: int) -> None:
        self.waiting += delta
        if self._observer is not None:
            self._observer.queue_length(self.waiting)

    def _tell_outcome(self, outcome: str) -> None:
        if self._observer is not None:
            self._observer.queue_outcome(outcome)
