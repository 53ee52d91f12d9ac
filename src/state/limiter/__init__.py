"""Per-client limits on requests and tokens per minute, by one of two algorithms.

``sliding_log`` (the default) keeps the time of every admission of the last
60 seconds: a request is admitted when fewer than ``L`` requests were admitted
in the 60 seconds before it, so no 60-second span ever holds more than ``L``
admissions (a fixed window admits up to ``2L`` across its boundary). Its
memory grows with the limit: one record per admission in the window.

``gcra`` (the generic cell rate algorithm) keeps one time per client and
limit, the theoretical arrival time (TAT), whatever the limit: each request
is a cell of ``60/L`` seconds; a request is admitted when the TAT, moved on by
its cell, is at most 60 seconds ahead of now, so ``L`` requests pass at once
(the burst) and then one every ``60/L`` seconds. Over any span of ``t``
seconds it admits at most ``L + t·L/60`` (a full burst, then the steady
rate), so a 60-second span can hold up to ``2L - 1`` where the sliding log
holds ``L``; over longer spans both converge on ``L`` per minute.

Tokens work the same way over amounts: a request reserves its estimate
(prompt plus ``max_tokens`` or the configured default) at admission, and
``reconcile`` replaces the reservation with the real usage when the answer
ends, so concurrent requests cannot overshoot the way post-paid counting does.
With ``gcra`` the tokens are a second cell whose TAT moves by ``60/T`` seconds
per token; reconciling moves it by the difference, never back before now.

``Limiter`` is the seam: ``MemoryLimiter`` keeps the state in this process,
``RedisLimiter`` in a Redis every replica shares; both run both algorithms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from ..joint import JointAdmission
    from ..spend import SpendStore

WINDOW_S = 60.0

Algorithm = Literal["sliding_log", "gcra"]


@dataclass(frozen=True, slots=True)
class Limits:
    requests_per_minute: int
    tokens_per_minute: int | None = None
    algorithm: Algorithm = "sliding_log"


@dataclass(slots=True)
class Quota:
    """What is left for a client: how many more requests (and tokens; ``None`` without a
    token limit) it could be admitted now."""

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
        """Replace a reservation with the tokens really used. Safe to call once per admission.

        A shared store may apply a reconciliation that gives tokens back a little later
        (with the client's next call, or within a fraction of a second): until then the
        limit is stricter, never looser.
        """
        ...

    async def peek(self, client_id: str, limits: Limits) -> Quota:
        """What remains, counting nothing."""
        ...

    def joint(self, spend: SpendStore) -> JointAdmission:
        """The admission of this limiter together with ``spend``: one atomic step (and one
        call, when both live in the same shared store)."""
        ...
