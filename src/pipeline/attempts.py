"""The attempt loop: an admitted request tried on its route's targets in order.

``Attempts.attempt`` orders the targets (``Route.plan``, then the cost
ceiling's choice), skips those whose breaker is open, retries a target on
429, 5xx and connection errors with backoff (or its ``Retry-After``), moves
on to the next target when a target gives up, and stops at the route's
deadline. Every attempt is recorded on the ``CallRecord``; when no target
answers, the failure is mapped to the error a client sees.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..config import GatewayConfig, RetryConfig
from ..errors import (
    GatewayError,
    UnsupportedField,
    UpstreamError,
    UpstreamPoolExhausted,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ..observability.telemetry import Attempt, CallRecord
from ..providers import AttemptFailed, Provider, Providers
from ..routing import Router, Target
from ..routing.breaker import now
from .admission import Ticket

T = TypeVar("T")


class Attempts:
    """The attempt loop of one ``Gateway`` (one config): its providers and its router's rng."""

    def __init__(self, config: GatewayConfig, providers: Providers, router: Router) -> None:
        self.config = config
        self.providers = providers
        self.router = router

    async def attempt(
        self,
        record: CallRecord,
        ticket: Ticket,
        call: Callable[[Provider, str], Awaitable[T]],
    ) -> T:
        """Try the route's targets in order until one answers; raise the failure mapped for clients.

        Within the route's deadline (counted from the start of the request),
        after which ``UpstreamTimeout`` is raised at once, whatever is running.
        """
        deadline = ticket.route.deadline_s
        if deadline is None:
            return await self._try_targets(record, ticket, call, None)
        loop = asyncio.get_running_loop()
        deadline_at = loop.time() + deadline - (time.perf_counter() - record.started)
        try:
            async with asyncio.timeout_at(deadline_at) as scope:
                return await self._try_targets(record, ticket, call, deadline_at)
        except TimeoutError:
            if not scope.expired():
                raise
            raise UpstreamTimeout(
                f"The request deadline of {deadline:g} s for model {ticket.model!r} passed"
                f" after {record.targets_tried} target(s) and {record.retries} retries."
            ) from None

    async def _try_targets(
        self,
        record: CallRecord,
        ticket: Ticket,
        call: Callable[[Provider, str], Awaitable[T]],
        deadline_at: float | None,
    ) -> T:
        """Each target of the plan in turn, skipping open breakers, until one answers."""
        plan = ticket.route.plan(
            ticket.prompt_estimate, ticket.completion_estimate, self.router.rng
        )
        if ticket.within is not None:
            plan = [target for target in plan if target in ticket.within]
        retry = ticket.route.retry
        last: AttemptFailed | None = None
        previous: Target | None = None
        for target in plan:
            if not target.breaker.acquire(now()):
                record.skipped_targets += 1
                continue
            if (
                last is not None
                and last.retry_after_s
                and previous
                and previous.provider == target.provider
            ):
                await asyncio.sleep(min(last.retry_after_s, self.config.retry_after_cap_s))
            try:
                return await self._try_target(record, target, call, retry, deadline_at)
            except AttemptFailed as exc:
                last, previous = exc, target
        if last is None:
            raise unavailable(ticket)
        raise exhausted(ticket, len(plan), last)

    async def _try_target(
        self,
        record: CallRecord,
        target: Target,
        call: Callable[[Provider, str], Awaitable[T]],
        retry: RetryConfig,
        deadline_at: float | None,
    ) -> T:
        """One target, retried while ``_retry_wait`` allows; raise its last ``AttemptFailed``."""
        breaker = target.breaker
        provider = self.providers[target.provider]
        record.targets_tried += 1
        record.provider, record.upstream_model, record.stub = (
            target.provider, target.model, provider.stub,
        )  # fmt: skip
        attempt = 1
        while True:
            started = time.perf_counter()
            error: str | None = "error"  # how the attempt ended, for its span and metric
            wait = 0.0
            try:
                result = await call(provider, target.model)
                error = None
            except AttemptFailed as exc:
                error = exc.kind if exc.status is None else f"http_{exc.status}"
                if exc.kind == "pool_exhausted":
                    # The gateway's own connection cap: the target did not fail.
                    record.breaker = breaker.state
                    raise
                closed = breaker.failure(now())
                record.breaker = breaker.state
                retry_wait = self._retry_wait(exc, attempt, retry, closed, deadline_at)
                if retry_wait is None:
                    raise
                wait = retry_wait
            except UnsupportedField:
                # Refused before any call (a field the target's dialect lacks): like a
                # provider refusing the request, it stops the route; the target is not at fault.
                error = "unsupported"
                raise
            except UpstreamRejected as exc:
                # A refusal of the request itself says the target is up.
                error = exc.type
                breaker.success()
                record.breaker = breaker.state
                raise
            except BaseException:
                # A cancellation or the gateway's own failure says nothing about the
                # target: a probe is handed back rather than kept, unreported.
                breaker.abandon()
                raise
            finally:
                ended = time.perf_counter()
                record.upstream_latency_ms = round((ended - started) * 1000, 3)
                record.attempts.append(
                    Attempt(target.provider, target.model, started, ended, error)
                )
            if error is None:
                breaker.success()
                record.breaker = breaker.state
                return result
            await asyncio.sleep(wait)
            attempt += 1
            record.retries += 1

    def _retry_wait(
        self,
        exc: AttemptFailed,
        attempt: int,
        retry: RetryConfig,
        breaker_closed: bool,
        deadline_at: float | None,
    ) -> float | None:
        """How long to wait before retrying the same target; ``None``: do not retry it.

        Retried: 429, 5xx and connection errors, while attempts are left and the
        breaker is closed. ``Retry-After`` is honoured as given; one longer than
        ``retry_after_cap_s`` moves on instead. Otherwise exponential backoff
        with equal jitter. A wait that would pass the deadline moves on too.
        """
        if attempt >= retry.max_attempts or not breaker_closed:
            return None
        status = exc.status or 0
        throttled_or_down = exc.kind == "status" and (status == 429 or status >= 500)
        if exc.kind != "connect" and not throttled_or_down:
            return None
        if exc.retry_after_s is not None:
            if exc.retry_after_s > self.config.retry_after_cap_s:
                return None
            wait = exc.retry_after_s
        else:
            ceiling = min(retry.max_backoff_s, retry.base_backoff_s * 2 ** (attempt - 1))
            wait = ceiling / 2 + self.router.rng.random() * ceiling / 2
        if deadline_at is not None and asyncio.get_running_loop().time() + wait >= deadline_at:
            return None
        return wait


def unavailable(ticket: Ticket) -> UpstreamUnavailable:
    """Every target's breaker is open: 503, retry when the first one may close."""
    moment = now()
    waits = [
        t.breaker.report(moment)["retry_in_s"]
        for t in (*ticket.route.group, *ticket.route.fallbacks)
    ]
    retry_in = min((w for w in waits if isinstance(w, float)), default=1.0)
    return UpstreamUnavailable(
        f"Every target for model {ticket.model!r} is cooling down after repeated failures"
        " (circuit open); retry later.",
        retry_after_s=max(1, math.ceil(retry_in)),
    )


def exhausted(ticket: Ticket, count: int, last: AttemptFailed) -> GatewayError:
    """Every target tried failed: the client's error follows the last failure."""
    summary = "The only target" if count == 1 else f"All {count} targets"
    message = f"{summary} for model {ticket.model!r} failed; last: {last.message}."
    if last.kind == "timeout":
        return UpstreamTimeout(message)
    if last.kind == "pool_exhausted":
        return UpstreamPoolExhausted(message, retry_after_s=1)
    if last.status == 429:
        retry = max(1, round(last.retry_after_s)) if last.retry_after_s else None
        return UpstreamRateLimited(message, retry_after_s=retry)
    return UpstreamError(message)
