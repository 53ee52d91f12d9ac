"""Circuit breaker: a target that keeps failing is skipped for a cool-down, then probed once.

States: ``closed`` (calls go through; consecutive failures are counted),
``open`` (calls are skipped until the cool-down ends), ``half_open`` (the
cool-down ended: exactly one caller gets to probe; its success closes the
breaker, its failure opens it again for another cool-down). A probe that
ends without a verdict (its request was cancelled, or the gateway itself
failed) hands the probe to the next caller at once (``abandon``); one that
never reports at all is given up after one cool-down, so a target cannot stay
half-open forever.

Single-threaded by design: the gateway's event loop is the only caller, and
no method awaits, so a check and its transition cannot interleave.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class Breaker:
    """``on_change``, when given, is told each new state (metrics and the dashboard show it)."""

    __slots__ = (
        "_cooldown_s", "_on_change", "_threshold", "failures", "opened_at", "probe_at", "state",
    )  # fmt: skip

    def __init__(
        self,
        failure_threshold: int,
        cooldown_s: float,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self._threshold = failure_threshold
        self._cooldown_s = cooldown_s
        self._on_change = on_change
        self.state = CLOSED
        self.failures = 0  # consecutive
        self.opened_at = 0.0
        self.probe_at = 0.0

    def available(self, now: float) -> bool:
        """Whether ``acquire`` would let a call through now (changes nothing)."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            return now >= self.opened_at + self._cooldown_s
        return now >= self.probe_at + self._cooldown_s

    def acquire(self, now: float) -> bool:
        """Claim the right to call: always when closed; the one probe when the cool-down ended."""
        if self.state == CLOSED:
            return True
        if not self.available(now):
            return False
        self.probe_at = now
        self._move(HALF_OPEN)
        return True

    def abandon(self) -> None:
        """A call ended without a verdict on the target (the gateway's own failure, or the
        request was cancelled): if it was the probe, the next caller may probe at once."""
        if self.state == HALF_OPEN:
            self.probe_at = -math.inf

    def success(self) -> None:
        self.failures = 0
        if self.state != CLOSED:
            self._move(CLOSED)

    def failure(self, now: float) -> bool:
        """Count a failure; ``True`` while the breaker stays closed (a retry may follow)."""
        self.failures += 1
        if self.state == HALF_OPEN or self.failures >= self._threshold:
            self.opened_at = now
            self._move(OPEN)
            return False
        return True

    def _move(self, state: str) -> None:
        changed = state != self.state
        self.state = state
        if changed and self._on_change is not None:
            self._on_change(state)

    def report(self, now: float) -> dict[str, object]:
        """The state as ``/healthz?verbose=1`` shows it."""
        retry_in = None
        if self.state == OPEN:
            retry_in = round(max(0.0, self.opened_at + self._cooldown_s - now), 3)
        return {"state": self.state, "consecutive_failures": self.failures, "retry_in_s": retry_in}


def now() -> float:
    return time.monotonic()
