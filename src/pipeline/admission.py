"""Admission: whether a request may run, and what it holds while it does.

``Admission.admit`` routes the request (rules, then alias), checks the
client's allow-list, applies the policies' request phase, checks the prompt
cap and the client's token cap, keeps the targets under a cost ceiling, holds
an estimate of the cost against the client's budget and counts the request
against the client's limits (reserving tokens, waiting for capacity where the
client may). The hold and the count are one step of the state (one Redis
call) for a keyed client whose rules are enforced; shadow rules and waiting
take them one after the other. What it admits is a ``Ticket``; every refusal
is a ``GatewayError`` carrying the client's quota (the edge renders it as headers).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from ..config import GatewayConfig
from ..errors import GatewayError, PromptTooLarge
from ..governance.identity import Client
from ..governance.policies import CallAttributes, Policies, Rule
from ..observability.telemetry import CallRecord, bounded
from ..routing import Route, Router, Target
from ..state.joint import Claim
from ..state.limiter import Decision, Limiter, Limits, Quota
from ..state.spend import BudgetDecision, SpendStore
from .cost import PriceTable, quote
from .refusals import (
    budget_refusal,
    ceiling_refusal,
    minute_refusal,
    note_shadow,
    rate_refusal,
)
from .waiting import Waiting

# A chat body's names for the completion budget (the last is the one the gateway sets).
CHAT_BUDGET_FIELDS = ("max_completion_tokens", "max_tokens")
_MAX_USE_CASE = 100
_MAX_OVER = 10_000


@dataclass(slots=True)
class Ticket:
    """An admitted request: what it asked for, its route, its token reservation, its quota."""

    model: str  # what the client asked for; answers carry it as their ``model``
    route: Route
    prompt_estimate: int
    completion_estimate: int
    reservation: object
    # The client's quota once counted (the answer's rate-limit headers).
    quota: Quota | None = None
    hold: object = None
    call: CallAttributes | None = None
    rules: tuple[Rule, ...] = ()
    # Under a cost ceiling: the targets that fit under it (None: every target may answer).
    within: tuple[Target, ...] | None = None
    # The body was changed (a policy, the client's token cap): its bytes cannot go as they came.
    body_changed: bool = False
    # Set by the first settlement: what the ticket holds is released exactly once.
    settled: bool = False

    @property
    def alias(self) -> str:
        return self.route.name


class Admission:
    """The admission step of one ``Gateway`` (one config), over the shared limiter and spend."""

    def __init__(
        self,
        config: GatewayConfig,
        router: Router,
        prices: PriceTable,
        policies: Policies,
        limiter: Limiter,
        spend: SpendStore,
        queue: Waiting,
    ) -> None:
        self.config = config
        self.router = router
        self.prices = prices
        self.policies = policies
        self.limiter = limiter
        self.spend = spend
        self.joint = limiter.joint(spend)
        self.queue = queue
        # Clients the limit refused for requests, and until when at most (monotonic):
        # only these are looked up before their body is read (refuse_over_limit).
        self._over: dict[str, float] = {}
        self._aliases_wait = any(a.queue_timeout_ms for a in config.aliases.values())

    async def refuse_over_limit(self, client_id: str, client: Client) -> None:
        """Refuse (429) a client already over its request limit, before its body is read.

        Counts nothing. Only a client the limit recently refused is looked up
        (the limiter's ``peek``), so the usual request costs no I/O; a client
        that may wait for capacity (``queue_timeout_ms``) or whose limit is a
        shadow is never refused here.
        """
        until = self._over.get(client_id)
        if until is None:
            return
        moment = time.monotonic()
        if moment >= until or client.rate_shadow or self._may_wait(client):
            del self._over[client_id]
            return
        quota = await self.limiter.peek(client_id, client.limits)
        if quota.remaining_requests >= 1:
            self._over.pop(client_id, None)
            return
        decision = Decision(False, quota, "requests", max(1, math.ceil(until - moment)))
        error = rate_refusal(client_id, client, decision)
        error.quota, error.counted = quota, True
        raise error

    def _may_wait(self, client: Client) -> bool:
        return client.queue_timeout_s is not None or self._aliases_wait

    def _note_over(self, client_id: str, decision: Decision) -> None:
        """Remember a refusal for requests until its ``retry_after_s`` (bounded in size)."""
        if decision.exceeded != "requests":
            return
        if len(self._over) >= _MAX_OVER:
            self._over.clear()  # a flood of invented client ids: forget, at worst parse again
        self._over[client_id] = time.monotonic() + max(decision.retry_after_s, 1)

    async def admit(
        self,
        record: CallRecord,
        client: Client,
        model: str,
        prompt: int,
        completion_budget: int | None,
        body: dict[str, Any],
        *,
        use_case: str | None = None,
        completes: bool = True,
        ceiling_usd: float | None = None,
        budget_fields: tuple[str, ...] = CHAT_BUDGET_FIELDS,
        choices: int = 1,
    ) -> Ticket:
        """Check and count a request; raise a ``GatewayError`` that carries the client's quota.

        ``prompt`` is the approximate prompt; ``completion_budget`` the most
        completion tokens the client allows per choice (``None``: it did not say),
        and ``choices`` how many choices the answer holds (chat's ``n``): the
        completion estimate, which the reservation, the client's token cap, the
        budget hold and the cost quote all read, is their product.
        ``body`` is the OpenAI-shaped body about to go upstream: policies and,
        for requests that produce a completion (``completes``), the client's
        token cap may change it. ``ceiling_usd`` is the client's cost ceiling
        (``X-Max-Cost-USD``): only targets whose quote fits under it may answer.
        ``budget_fields`` are the body's names for the completion budget.
        """
        # bounded here, so that every view of the record (line, metrics, traces) gets it so
        record.alias = record.requested_model = bounded(model)
        if use_case is not None:
            use_case = record.use_case = use_case[:_MAX_USE_CASE]
        try:
            ticket = self.route(record, model, prompt, use_case)
            client.check_model(ticket.alias)
            if self.policies.rules:
                await self._apply_policies(record, client, ticket, body, use_case)
            self.check_prompt(ticket)
            self.estimate(
                ticket, client, body, completion_budget, completes, budget_fields, choices
            )
            self.fit(record, client, ticket, choices, ceiling_usd)
        except GatewayError as exc:
            exc.quota = await self.quota(record.client_id, client)
            raise
        decision = await self._hold_and_count(record, client, ticket)
        ticket.quota = decision.quota
        if decision.allowed:
            ticket.reservation = decision.reservation
        else:
            await self._refused(record, client, ticket, decision)
        return ticket

    # The steps of ``admit`` that count nothing are public: ``/v1/explain`` runs them too.

    def route(self, record: CallRecord, model: str, prompt: int, use_case: str | None) -> Ticket:
        """The request's route (rules, then alias)."""
        route, rule = self.router.resolve(model, record.client_id, use_case, prompt)
        record.alias, record.route = route.name, rule
        return Ticket(model, route, prompt, 0, None)

    def check_prompt(self, ticket: Ticket) -> None:
        """The prompt cap (``max_prompt_tokens``)."""
        prompt = ticket.prompt_estimate
        cap = self.config.max_prompt_tokens
        if cap is not None and prompt > cap:
            raise PromptTooLarge(
                f"The prompt is about {prompt} tokens; the limit is {cap}.", param="messages"
            )

    def estimate(
        self,
        ticket: Ticket,
        client: Client,
        body: dict[str, Any],
        completion_budget: int | None,
        completes: bool,
        budget_fields: tuple[str, ...],
        choices: int,
    ) -> None:
        """The completion estimate: ``choices`` times the budget of one, under the client's
        token cap (which may refuse; the estimate is then the one asked for)."""
        reserve = client.reserve_completion_tokens
        asked = completion_budget if completion_budget is not None else reserve
        ticket.completion_estimate = choices * asked
        if completes:
            capped = client.cap_completion(body, completion_budget, budget_fields, choices)
            ticket.body_changed |= capped != completion_budget
            ticket.completion_estimate = choices * (capped if capped is not None else reserve)

    def fit(
        self,
        record: CallRecord,
        client: Client,
        ticket: Ticket,
        choices: int,
        ceiling_usd: float | None,
    ) -> None:
        """What never fits: several choices past the tokens a minute, a quote past the ceiling."""
        too_big = minute_refusal(
            record.client_id, client, ticket.prompt_estimate, ticket.completion_estimate, choices
        )
        if too_big is not None:
            if not client.rate_shadow:
                raise too_big
            note_shadow(record, too_big)
        if ceiling_usd is not None:
            self._fit_ceiling(ticket, ceiling_usd)

    def _fit_ceiling(self, ticket: Ticket, ceiling_usd: float) -> None:
        """Keep the targets whose quote fits under the ceiling; refuse when none does."""
        priced = quote(
            ticket.route, self.prices, ticket.prompt_estimate, ticket.completion_estimate
        )
        fits = priced.within(ceiling_usd)
        if not fits:
            raise ceiling_refusal(priced, ceiling_usd)
        if len(fits) < len(priced.targets):
            ticket.within = fits

    async def _apply_policies(
        self,
        record: CallRecord,
        client: Client,
        ticket: Ticket,
        body: dict[str, Any],
        use_case: str | None,
    ) -> None:
        """The policies' request phase; the matching rules are kept for the response phase."""
        call, rules = self.policies.select(record.client_id, ticket.alias, client.tags, use_case)
        record.policies = tuple(rule.name for rule in rules)
        if rules:
            ticket.call, ticket.rules = call, rules
            ticket.body_changed |= any(
                not rule.shadow and rule.action in {"redact", "hook"} for rule in rules
            )
            for note in await self.policies.before(call, rules, body):
                record.note_shadow(note)

    async def _hold_and_count(self, record: CallRecord, client: Client, ticket: Ticket) -> Decision:
        """The budget hold (keyed clients) and the limiter's decision: one joint step when
        both rules are enforced and the client does not queue behind earlier waiters."""
        client_id, reserve = record.client_id, self._reserve(client, ticket)
        if client.id is None:
            return await self._count(client_id, client, ticket, reserve)
        timeout = client.queue_timeout_s or ticket.route.queue_timeout_s
        if (
            client.budget_shadow
            or client.rate_shadow
            or client.id != client_id
            or (timeout is not None and self.queue.queued(client_id))
        ):
            await self._hold_budget(record, client, ticket)
            return await self._count(client_id, client, ticket, reserve)
        estimate = self._estimate_usd(ticket)
        claim = Claim(client_id, client.limits, reserve, client.budget, estimate)
        verdict, decision = await self.joint.admit(claim)
        if decision is None:
            await self._over_budget(record, client, verdict)
        assert decision is not None
        ticket.hold = verdict.hold
        if decision.allowed or timeout is None or decision.exceeded == "unavailable":
            return decision
        # over a limit, and the client may wait for capacity: it holds its budget meanwhile
        await self._hold_budget(record, client, ticket)
        return await self._wait(client_id, client, reserve, decision, timeout)

    def _reserve(self, client: Client, ticket: Ticket) -> int:
        """The tokens the request reserves against the client's token limit."""
        reserve = ticket.prompt_estimate + ticket.completion_estimate
        tpm = client.limits.tokens_per_minute
        # max_tokens is a ceiling, not a forecast: a request asking for more than the
        # whole minute's tokens still runs, alone in an otherwise empty window.
        return reserve if tpm is None else min(reserve, tpm)

    def _estimate_usd(self, ticket: Ticket) -> float:
        """The request's estimated cost, at the first (fitting) target's price."""
        first = ticket.within[0] if ticket.within else ticket.route.group[0]
        return (
            self.prices.ceiling_usd(
                first.provider, first.model, ticket.prompt_estimate, ticket.completion_estimate
            )
            or 0.0
        )

    async def _hold_budget(self, record: CallRecord, client: Client, ticket: Ticket) -> None:
        """Hold the request's estimated cost; refuse over budget (under a shadow budget,
        note it and hold anyway)."""
        assert client.id is not None
        estimate = self._estimate_usd(ticket)
        verdict = await self.spend.admit(client.id, client.budget, estimate)
        if not verdict.allowed:
            await self._over_budget(record, client, verdict)
            verdict = await self.spend.admit(client.id, None, estimate)
        ticket.hold = verdict.hold

    async def _over_budget(
        self, record: CallRecord, client: Client, verdict: BudgetDecision
    ) -> None:
        """Refuse a request over the client's budget; a shadow budget only notes it."""
        assert client.id is not None and client.budget is not None
        over = budget_refusal(client.id, client.budget, verdict)
        if client.budget_shadow:
            note_shadow(record, over)
            return
        over.quota = await self.quota(record.client_id, client)
        raise over

    async def _count(
        self, client_id: str, client: Client, ticket: Ticket, reserve: int
    ) -> Decision:
        """The limiter's decision; a refused request of a client (or alias) that may wait for
        capacity waits in the queue (behind the client's earlier waiters)."""
        timeout = client.queue_timeout_s or ticket.route.queue_timeout_s
        decision: Decision | None = None
        if timeout is None or client.rate_shadow or not self.queue.queued(client_id):
            decision = await self.limiter.admit(client_id, client.limits, reserve)
            if (
                decision.allowed
                or timeout is None
                or client.rate_shadow
                or decision.exceeded == "unavailable"  # a store that is down: no use waiting
            ):
                return decision
        return await self._wait(client_id, client, reserve, decision, timeout)

    async def _wait(
        self,
        client_id: str,
        client: Client,
        reserve: int,
        refused: Decision | None,
        timeout: float,
    ) -> Decision:
        return await self.queue.wait(
            client_id, client.limits, reserve, refused, timeout_s=timeout,
            priority=client.priority, max_length=self.config.max_queue_length,
        )  # fmt: skip

    async def _refused(
        self, record: CallRecord, client: Client, ticket: Ticket, decision: Decision
    ) -> None:
        """Refuse over the limits, releasing the budget hold; under shadow rules, note it only."""
        error = rate_refusal(record.client_id, client, decision)
        if client.rate_shadow and decision.exceeded != "unavailable":
            note_shadow(record, error)
            return
        self._note_over(record.client_id, decision)
        if ticket.hold is not None:
            await self.spend.settle(ticket.hold, 0.0)
        error.quota, error.counted = ticket.quota, True
        raise error

    async def count_refusal(
        self, record: CallRecord, client: Client, error: GatewayError
    ) -> GatewayError:
        """Count a refused request of a known client against its request limit (no tokens).

        Returns ``error``, or the limit's own refusal (429) when the client is
        already over its request limit: a client cannot have refusals (an unknown
        model, a bad body) faster than it could have answers.
        """
        error.counted = True
        return await self.count_request(record.client_id, client) or error

    async def count_request(self, client_id: str, client: Client) -> GatewayError | None:
        """Count one request of no tokens against the client's request limit; the refusal
        (429) when it is over. Shadow limits and an unavailable store refuse nothing here."""
        limits = Limits(client.limits.requests_per_minute)
        decision = await self.limiter.admit(client_id, limits, 0)
        if decision.allowed:
            await self.limiter.reconcile(decision.reservation, 0)
            return None
        if client.rate_shadow or decision.exceeded == "unavailable":
            return None
        self._note_over(client_id, decision)
        over = rate_refusal(client_id, client, decision)
        over.quota, over.counted = decision.quota, True
        return over

    async def quota(self, client_id: str, client: Client) -> Quota:
        """The client's quota as it stands, counting nothing."""
        return await self.limiter.peek(client_id, client.limits)
