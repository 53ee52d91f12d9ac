"""The Redis backend's requests: one script call per admission, settlements deferred.

An admission (budget check and hold, limit check and token reservation) is
one ``ADMIT`` script call on the client's slot. A settlement (the token
reconcile and the charge when the answer ends) that gives back, i.e. uses
no more tokens than reserved and costs no more than held, is not sent on
its own: it waits here and goes with the client's next call (admission,
quota read) or, when the client sends nothing within ``FLUSH_AFTER_S``, with
the flusher's next batch (one pipelined round trip for every waiting client
on one server; concurrent calls on a cluster). A settlement that takes more
than was reserved or held is sent at once (by the flusher, without waiting).
So a busy client costs one script call per request, and Redis is never told
less than the client used: until a give-back lands the limits are stricter,
and a crash loses only give-backs (the reservations leave the window within
a minute; an estimate stays charged instead of the smaller real cost).

The waiting settlements are bounded (``MAX_WAITING``: beyond it the flusher
runs at once) and flushed at shutdown (``aclose``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import time
from typing import Any

from ..config import BudgetConfig
from ..errors import LimiterUnavailable
from .joint import Claim
from .limiter import Decision, Limits, Quota
from .redis_scripts import ADMIT, PEEK, SETTLE, SPENT
from .redis_store import Arg, RedisStore, Script, StateUnavailable, slot_tag
from .spend import BudgetDecision, Spend

log = logging.getLogger("gateway.state")

FLUSH_AFTER_S = 0.1
MAX_WAITING = 10_000
# Settlements one call carries; more wait for the next call.
_PER_CALL = 32
_NO_LIMIT = -1
_RATE_EXCEEDED = {1: "requests", 2: "tokens"}
_BUDGET_EXCEEDED = {"d": "usd_per_day", "m": "usd_per_month"}
_ADMITTED, _OVER_LIMIT, _OVER_BUDGET = 1, 0, 2

Settlement = tuple[Arg, ...]


class Reservation:
    """Tokens reserved by a Redis admission: the slot tag, and how to give them back."""

    __slots__ = ("member", "tag", "tokens", "tpm")

    def __init__(self, tag: str, member: str | None, tokens: int, tpm: int) -> None:
        self.tag = tag
        self.member = member  # sliding log: the admission's member; GCRA: None
        self.tokens = tokens
        self.tpm = tpm

    def settlement(self, used_tokens: int) -> Settlement:
        if self.member is not None:
            return ("l", self.member, used_tokens, "", "", "")
        return ("g", used_tokens - self.tokens, self.tpm, "", "", "")


class Hold:
    """A budget hold taken by a Redis admission, and the month and day it was charged to."""

    __slots__ = ("day", "estimate", "id", "month", "tag")

    def __init__(self, tag: str, hold_id: str, estimate: float, month: str, day: str) -> None:
        self.tag = tag
        self.id = hold_id
        self.estimate = estimate
        self.month = month
        self.day = day

    def settlement(self, cost_usd: float) -> Settlement:
        return ("s", self.id, repr(self.estimate), repr(cost_usd), self.month, self.day)


class RedisState:
    """The Redis backend's operations over one ``RedisStore`` (``ADMIT`` and friends
    registered), with the settlements waiting to be applied."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self._limits_prefix = f"{store.key_prefix}rl:"
        self._spend_prefix = f"{store.key_prefix}spend:"
        # Members and hold ids only need to be unique per client, across replicas.
        self._node = os.urandom(6).hex()
        self._serial = itertools.count()
        self._waiting: dict[str, list[Settlement]] = {}
        # When each client's oldest waiting settlement was deferred (-inf: send it now).
        self._since: dict[str, float] = {}
        self._count = 0
        self._everything = False  # the bound was reached, or shutdown: flush all
        self._wake: asyncio.Event | None = None
        self._flusher: asyncio.Task[None] | None = None

    async def admit(self, claim: Claim) -> tuple[BudgetDecision, Decision | None]:
        """``JointAdmission.admit`` in one script call."""
        return await self.run_admit(
            claim.client_id, claim.limits, claim.tokens, claim.budget, claim.estimate_usd, True
        )

    async def run_admit(
        self,
        client_id: str,
        limits: Limits | None,
        tokens: int,
        budget: BudgetConfig | None,
        estimate_usd: float,
        hold: bool,
    ) -> tuple[BudgetDecision, Decision | None]:
        """The ``ADMIT`` script for ``client_id``: the budget step when ``hold``, the limits
        when ``limits`` is given. Redis down: ``on_error`` (``fail_closed`` with a budget
        step raises ``LimiterUnavailable``; without one, a refusal ``"unavailable"``)."""
        tag = slot_tag(client_id)
        serial = f"{self._node}.{next(self._serial)}"
        args: list[Arg] = ["", 0, _NO_LIMIT, 0, serial]
        tpm = _NO_LIMIT
        if limits is not None:
            tpm = _NO_LIMIT if limits.tokens_per_minute is None else limits.tokens_per_minute
            args[:4] = [limits.algorithm, limits.requests_per_minute, tpm, tokens]
        per_day = per_month = float(_NO_LIMIT)
        if budget is not None:
            per_day = _NO_LIMIT if budget.usd_per_day is None else budget.usd_per_day
            per_month = _NO_LIMIT if budget.usd_per_month is None else budget.usd_per_month
        args += [serial if hold else "", repr(estimate_usd), repr(per_day), repr(per_month)]
        try:
            reply = await self._run_for(ADMIT, tag, args)
        except StateUnavailable:
            return self._unavailable(limits, hold)
        values = _values(reply, 11)
        status = int(values[0])
        spend = Spend(float(values[6]), float(values[7]), float(values[8]))
        if status == _OVER_BUDGET:
            return BudgetDecision(False, spend, _BUDGET_EXCEEDED[values[5].decode()]), None
        decision = None
        if limits is not None:
            left_tokens = int(values[2])
            quota = Quota(int(values[1]), None if left_tokens == _NO_LIMIT else left_tokens)
            if status == _OVER_LIMIT:
                wait_s = max(1, math.ceil(int(values[4]) / 1e6))
                decision = Decision(False, quota, _RATE_EXCEEDED[int(values[3])], wait_s)
                return BudgetDecision(True, spend), decision
            reservation = None
            if tpm != _NO_LIMIT:
                member = serial if limits.algorithm == "sliding_log" else None
                reservation = Reservation(tag, member, tokens, tpm)
            decision = Decision(True, quota, reservation=reservation)
        held = None
        if hold:
            held = Hold(tag, serial, estimate_usd, values[9].decode(), values[10].decode())
        return BudgetDecision(True, spend, hold=held), decision

    async def peek(self, client_id: str, limits: Limits) -> Quota:
        tpm = _NO_LIMIT if limits.tokens_per_minute is None else limits.tokens_per_minute
        args: list[Arg] = [limits.algorithm, limits.requests_per_minute, tpm]
        try:
            reply = await self._run_for(PEEK, slot_tag(client_id), args)
        except StateUnavailable:
            return _whole(limits) if self.store.on_error == "fail_open" else _none(limits)
        left_requests, left_tokens = (int(value) for value in _values(reply, 2))
        return Quota(left_requests, None if left_tokens == _NO_LIMIT else left_tokens)

    async def spent(self, client_id: str) -> Spend:
        try:
            reply = await self._run_for(SPENT, slot_tag(client_id), [])
        except StateUnavailable:
            return Spend(0.0, 0.0)
        day, month, held = (float(value) for value in _values(reply, 3))
        return Spend(day, month, held)

    def defer(self, tag: str, settlement: Settlement, urgent: bool) -> None:
        """Queue a settlement of the client with slot tag ``tag``; ``urgent`` ones (more
        used than reserved) are sent at once, the others once they have waited
        ``FLUSH_AFTER_S`` (unless the client's next call takes them first)."""
        waiting = self._waiting.get(tag)
        if waiting is None:
            waiting = self._waiting[tag] = []
            self._since[tag] = time.monotonic()
        waiting.append(settlement)
        self._count += 1
        if urgent:
            self._since[tag] = -math.inf
        if self._count >= MAX_WAITING:
            self._everything = True
        self._start(urgent or self._everything)

    async def flush(self, waited: float = 0.0) -> None:
        """Apply the settlements that have waited ``waited`` seconds (default: all) now, one
        script call per client, in batches."""
        cutoff = time.monotonic() - waited
        while True:
            due = [tag for tag, since in self._since.items() if since <= cutoff]
            if not due:
                return
            batch = [(self._keys(tag), self._take(tag, [])) for tag in due]
            try:
                await self.store.run_many(SETTLE, batch)
            except StateUnavailable:
                return  # what was taken is lost, as a failed call's: mostly give-backs

    async def aclose(self) -> None:
        """Apply what is waiting now, and let the flusher end."""
        self._everything = True
        if self._wake is not None:
            self._wake.set()
        if self._flusher is not None:
            await self._flusher  # it ends once nothing waits
        await self.flush()

    async def _run_for(self, script: Script, tag: str, args: list[Arg]) -> object:
        """``script`` on the client's keys, carrying its waiting settlements."""
        return await self.store.run(script, self._keys(tag), self._take(tag, args))

    def _keys(self, tag: str) -> tuple[str, str]:
        return self._limits_prefix + tag, self._spend_prefix + tag

    def _take(self, tag: str, args: list[Arg]) -> list[Arg]:
        """``args`` followed by (up to ``_PER_CALL`` of) the client's waiting settlements."""
        waiting = self._waiting.get(tag)
        if not waiting:
            args.append(0)
            return args
        taken, rest = waiting[:_PER_CALL], waiting[_PER_CALL:]
        if rest:
            self._waiting[tag] = rest
        else:
            del self._waiting[tag]
            del self._since[tag]
        self._count -= len(taken)
        args.append(len(taken))
        for settlement in taken:
            args.extend(settlement)
        return args

    def _start(self, now: bool) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        if now:
            self._wake.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        """Until nothing waits: sleep until the oldest settlement is due (or a wake-up),
        then send what is due (everything after the bound or at shutdown)."""
        assert self._wake is not None
        while self._waiting:
            oldest = min(self._since.values())
            delay = oldest + FLUSH_AFTER_S - time.monotonic()
            if delay > 0 and not self._everything:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
            self._wake.clear()
            everything, self._everything = self._everything, False
            await self.flush(0.0 if everything else FLUSH_AFTER_S)

    def _unavailable(
        self, limits: Limits | None, hold: bool
    ) -> tuple[BudgetDecision, Decision | None]:
        """fail_open: admitted, nothing counted or held; fail_closed: refused."""
        fail_open = self.store.on_error == "fail_open"
        if hold and not fail_open:
            raise LimiterUnavailable(
                "The budget store is unavailable, so the request was not served; retry shortly.",
                retry_after_s=1,
            )
        decision = None
        if limits is not None:
            if fail_open:
                decision = Decision(True, _whole(limits))
            else:
                decision = Decision(False, _none(limits), "unavailable", 1)
        return BudgetDecision(True, Spend(0.0, 0.0)), decision


def _whole(limits: Limits) -> Quota:
    return Quota(limits.requests_per_minute, limits.tokens_per_minute)


def _none(limits: Limits) -> Quota:
    return Quota(0, None if limits.tokens_per_minute is None else 0)


def _values(reply: object, count: int) -> list[Any]:
    """The script's reply: integers, and USD amounts as bytes (Lua would truncate numbers)."""
    if not isinstance(reply, list) or len(reply) != count:
        raise TypeError(f"unexpected script reply {reply!r}")
    return reply
