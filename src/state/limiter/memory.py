"""The in-process limiter: sliding-window logs, or GCRA meters, in dictionaries.

Exact under concurrency because the event loop runs ``admit`` to completion
without an ``await`` between the check and the count. Limits are per process:
several workers each enforce their own.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..joint import JointAdmission, Sequential
from . import WINDOW_S, Decision, Limits, Quota, gcra

if TYPE_CHECKING:
    from ..spend import SpendStore

_SWEEP_EVERY = 4096


class _Reservation:
    __slots__ = ("at", "tokens", "window")

    def __init__(self, at: float, tokens: int, window: _Window) -> None:
        self.at = at
        self.tokens = tokens
        self.window: _Window | None = window


class _Window:
    __slots__ = ("requests", "reservations", "token_total")

    def __init__(self) -> None:
        self.requests: deque[float] = deque()
        self.reservations: deque[_Reservation] = deque()
        self.token_total = 0

    def expire(self, now: float) -> None:
        horizon = now - WINDOW_S
        requests = self.requests
        while requests and requests[0] <= horizon:
            requests.popleft()
        reservations = self.reservations
        while reservations and reservations[0].at <= horizon:
            expired = reservations.popleft()
            self.token_total -= expired.tokens
            expired.window = None

    def quota(self, limits: Limits) -> Quota:
        remaining_tokens = None
        if limits.tokens_per_minute is not None:
            remaining_tokens = max(0, limits.tokens_per_minute - self.token_total)
        return Quota(max(0, limits.requests_per_minute - len(self.requests)), remaining_tokens)


class MemoryLimiter:
    """``Limiter`` over this process's memory. ``clock`` is monotonic seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._meters: dict[str, gcra.Meter] = {}
        self._admissions = 0

    async def admit(self, client_id: str, limits: Limits, tokens: int) -> Decision:
        now = self._clock()
        self._admissions += 1
        if self._admissions % _SWEEP_EVERY == 0:
            self._sweep(now)
        if limits.algorithm == "gcra":
            meter = self._meters.get(client_id)
            if meter is None:
                meter = self._meters[client_id] = gcra.Meter()
            return meter.admit(client_id, limits, tokens, now)
        window = self._windows.get(client_id)
        if window is None:
            window = self._windows[client_id] = _Window()
        window.expire(now)

        if len(window.requests) >= limits.requests_per_minute:
            wait = window.requests[0] + WINDOW_S - now
            return Decision(False, window.quota(limits), "requests", _ceil_s(wait))
        tpm = limits.tokens_per_minute
        if tpm is not None and window.token_total + tokens > tpm:
            return Decision(
                False, window.quota(limits), "tokens", self._token_wait(window, tpm, tokens, now)
            )

        window.requests.append(now)
        reservation = None
        if tpm is not None:
            reservation = _Reservation(now, tokens, window)
            window.reservations.append(reservation)
            window.token_total += tokens
        return Decision(True, window.quota(limits), reservation=reservation)

    async def reconcile(self, reservation: object, used_tokens: int) -> None:
        if isinstance(reservation, gcra.Reservation):
            meter = self._meters.get(reservation.client_id)
            if meter is None:  # forgotten while idle: an overrun still counts from now
                meter = self._meters[reservation.client_id] = gcra.Meter()
            meter.reconcile(reservation, used_tokens, self._clock())
            return
        if not isinstance(reservation, _Reservation) or reservation.window is None:
            return  # no token limit, or the reservation already left the window
        reservation.window.token_total += used_tokens - reservation.tokens
        reservation.tokens = used_tokens

    async def peek(self, client_id: str, limits: Limits) -> Quota:
        if limits.algorithm == "gcra":
            meter = self._meters.get(client_id)
            return (meter or gcra.Meter()).quota(limits, self._clock())
        window = self._windows.get(client_id)
        if window is None:
            return _Window().quota(limits)
        window.expire(self._clock())
        return window.quota(limits)

    def _token_wait(self, window: _Window, tpm: int, tokens: int, now: float) -> int:
        """Seconds until enough reservations leave the window for ``tokens`` to fit."""
        if tokens > tpm:
            return math.ceil(WINDOW_S)
        need = window.token_total + tokens - tpm
        for reservation in window.reservations:
            need -= reservation.tokens
            if need <= 0:
                return _ceil_s(reservation.at + WINDOW_S - now)
        return math.ceil(WINDOW_S)

    def joint(self, spend: SpendStore) -> JointAdmission:
        return Sequential(self, spend)

    def _sweep(self, now: float) -> None:
        """Forget clients with nothing left in their window, so memory stays bounded."""
        for client_id in [c for c, w in self._windows.items() if _idle(w, now)]:
            del self._windows[client_id]
        for client_id in [c for c, m in self._meters.items() if m.idle(now)]:
            del self._meters[client_id]


def _idle(window: _Window, now: float) -> bool:
    window.expire(now)
    return not window.requests and not window.reservations


def _ceil_s(seconds: float) -> int:
    return max(1, math.ceil(seconds))
