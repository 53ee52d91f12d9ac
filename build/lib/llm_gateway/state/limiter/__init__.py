"""Per-client limits on requests and tokens per minute.

The algorithm is a sliding-window log: a request is admitted when fewer than
``L`` requests were admitted in the 60 seconds before it, so no 60-second span
ever holds more than ``L`` admissions (a fixed window admits up to ``2L``
across its boundary). Tokens work the same way over amounts: a request
reserves its estimate (prompt plus ``max_tokens`` or the configured default) at
admission, and ``reconcile`` replaces the reservation with the real usage when
the answer ends, so concurrent requests cannot overshoot the way post-paid
counting does.

``Limiter`` is the seam: ``MemoryLimiter`` keeps the windows in this process,
``RedisLimiter`` in a Redis every replica shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class Limits:
    requests_per_minute: int
    tokens_per_minute: int | None = None


@dataclass(slots=True)
class Quota:
    """What is left for a client; ``remaining_tokens`` is ``None`` without a token limit."""

    remaining_requests: int
    remaining_tokens: int | None


@dataclass(slots=True)
class Decision:
    """The outcome of ``admit``.

    When refused, ``exceeded`` names the limit (``"requests"`` or ``"tokens"``),
    or is ``"unavailable"`` when a shared store is down and set to fail closed,
    and ``retry_after_s`` says when a retry can succeed. When admitted,
    ``reservation`` is the handle ``reconcile`` takes.
    """

    allowed: bool
    quota: Quota
    exceeded: str | None = None
    retry_after_s: int = 0
    reservation: object = None


class Limiter(Protocol):
    async def admit(self, client_id: str, limits: Limits, tokens: int) -> Decision:
        """Count one request and reserve ``tokens`` in one step, or refuse and count nothing.

        Exact under concurrency: of N concurrent calls against a limit L, exactly
        min(N, L) are admitted. Never raises for a refusal.
        """
        ...

    async def reconcile(self, reservation: object, used_tokens: int) -> None:
        """Replace a reservation with the tokens really used. Safe to call once per admission."""
        ...

    async def peek(self, client_id: str, limits: Limits) -> Quota:
        """What remains, counting nothing."""
        ...
