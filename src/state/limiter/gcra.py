"""The generic cell rate algorithm (GCRA) in this process: one stored time per client and limit.

Times are counted in cells of the limit they belong to: ``now * L / 60 s``
for a limit of ``L`` per minute, so a request (or a token) is one cell and
adding it is exact in floating point, however long the TAT runs. A stored
TAT remembers the limit it was counted in; when the limit changes (a reload)
the cells still owed carry over, as the sliding log keeps its admissions.
``RedisLimiter`` runs the same arithmetic in Lua.

- admit ``n`` cells when ``max(TAT, now) + n - now <= L``, then ``TAT = max(TAT, now) + n``;
- refused: retry in ``(max(TAT, now) + n - L - now)`` cells; nothing changes;
- remaining: ``floor(L - (max(TAT, now) - now))``, what could be admitted now;
- reconcile by ``d`` tokens: ``TAT = max(max(TAT, now) + d, now)``.
"""

from __future__ import annotations

import math

from . import WINDOW_S, Decision, Limits, Quota

# Comparisons allow a thousandth of a cell, the most floating point can be off by.
EPSILON = 1e-3


class Cell:
    """One limit's theoretical arrival time, in cells of ``limit``."""

    __slots__ = ("limit", "tat")

    def __init__(self, tat: float, limit: int) -> None:
        self.tat = tat
        self.limit = limit

    def base(self, now_s: float, limit: int) -> tuple[float, float]:
        """``(max(TAT, now), now)`` in cells of ``limit``."""
        now = now_s * limit / WINDOW_S
        if self.limit == limit:
            return max(self.tat, now), now
        return now + max(0.0, self.tat - now_s * self.limit / WINDOW_S), now

    def set(self, tat: float, limit: int) -> None:
        self.tat, self.limit = tat, limit


class Reservation:
    """Tokens a GCRA admission reserved: whose, how many, under which token limit."""

    __slots__ = ("client_id", "settled", "tokens", "tpm")

    def __init__(self, client_id: str, tokens: int, tpm: int) -> None:
        self.client_id = client_id
        self.tokens = tokens
        self.tpm = tpm
        self.settled = False


class Meter:
    """A client's request cell and token cell."""

    __slots__ = ("requests", "tokens")

    def __init__(self) -> None:
        self.requests = Cell(-math.inf, 1)
        self.tokens = Cell(-math.inf, 1)

    def admit(self, client_id: str, limits: Limits, tokens: int, now_s: float) -> Decision:
        rpm, tpm = limits.requests_per_minute, limits.tokens_per_minute
        request_base, request_now = self.requests.base(now_s, rpm)
        token_base = token_now = 0.0
        if tpm is not None:
            token_base, token_now = self.tokens.base(now_s, tpm)
        quota = _quota(rpm, request_base - request_now, tpm, token_base - token_now)
        over = request_base + 1 - request_now - rpm
        if over > EPSILON:
            return Decision(False, quota, "requests", _seconds(over, rpm))
        if tpm is not None:
            over = token_base + tokens - token_now - tpm
            if over > EPSILON:
                return Decision(False, quota, "tokens", _seconds(over, tpm))
        self.requests.set(request_base + 1, rpm)
        reservation = None
        if tpm is not None:
            self.tokens.set(token_base + tokens, tpm)
            reservation = Reservation(client_id, tokens, tpm)
        quota = _quota(rpm, request_base + 1 - request_now, tpm, token_base + tokens - token_now)
        return Decision(True, quota, reservation=reservation)

    def quota(self, limits: Limits, now_s: float) -> Quota:
        rpm, tpm = limits.requests_per_minute, limits.tokens_per_minute
        request_base, request_now = self.requests.base(now_s, rpm)
        token_debt = 0.0
        if tpm is not None:
            token_base, token_now = self.tokens.base(now_s, tpm)
            token_debt = token_base - token_now
        return _quota(rpm, request_base - request_now, tpm, token_debt)

    def idle(self, now_s: float) -> bool:
        """Whether both TATs are past: the meter is then the same as a new one."""
        return all(c.tat <= now_s * c.limit / WINDOW_S for c in (self.requests, self.tokens))

    def reconcile(self, reservation: Reservation, used_tokens: int, now_s: float) -> None:
        """Move the token TAT by the difference, never before now (once per reservation)."""
        if reservation.settled:
            return
        reservation.settled = True
        cell = self.tokens
        limit = cell.limit if cell.tat > -math.inf else reservation.tpm
        base, now = cell.base(now_s, limit)
        cell.set(max(base + used_tokens - reservation.tokens, now), limit)


def _quota(rpm: int, request_debt: float, tpm: int | None, token_debt: float) -> Quota:
    tokens = None if tpm is None else max(0, math.floor(tpm - token_debt + EPSILON))
    return Quota(max(0, math.floor(rpm - request_debt + EPSILON)), tokens)


def _seconds(cells: float, limit: int) -> int:
    return max(1, math.ceil(cells * WINDOW_S / limit - EPSILON))
