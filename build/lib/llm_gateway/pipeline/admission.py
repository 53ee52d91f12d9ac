"""Admission: whether a request may run, and what it holds while it does.

``Admission.admit`` routes the request (rules, then alias), checks the
client's allow-list, applies the policies' request phase, checks the prompt
cap and the client's token cap, keeps the targets under a cost ceiling, holds
an estimate of the cost against the client's budget and counts the request
against the client's limits (reserving tokens, waiting for capacity where the
client may). What it admits is a ``Ticket``; every refusal is a
``GatewayError`` carrying the client's limit headers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import GatewayConfig
from ..edge.ratelimit_fields import POLICY, STATE
from ..errors import GatewayError, PromptTooLarge
from ..governance.identity import Client
from ..governance.policies import Call, Policies, Rule
from ..observability.telemetry import CallRecord
from ..routing import Route, Router, Target
from ..state.limiter import Decision, Limiter, Quota
from ..state.spend import SpendStore
from .cost import PriceTable, quote
from .refusals import (
    budget_refusal,
    ceiling_refusal,
    note_shadow,
    rate_refusal,
    with_rule_fields,
)
from .waiting import Waiting

_MAX_USE_CASE = 100


@dataclass(slots=True)
class Ticket:
    """An admitted request: what it asked for, its route, its token reservation, its headers."""

    model: str  # what the client asked for; answers carry it as their ``model``
    route: Route
    prompt_estimate: int
    completion_estimate: int
    reservation: object
    headers: dict[str, str] = field(default_factory=dict)
    hold: object = None
    call: Call | None = None
    rules: tuple[Rule, ...] = ()
    # Under a cost ceiling: the targets that fit under it (None: every target may answer).
    within: tuple[Target, ...] | None = None
    # The body was changed (a policy, the client's token cap): its bytes cannot go as they came.
    body_changed: bool = False

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
        self.queue = queue

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
        budget_fields: tuple[str, ...] = ("max_completion_tokens", "max_tokens"),
    ) -> Ticket:
        """Check and count a request; raise a ``GatewayError`` that carries limit headers.

        ``prompt`` is the approximate prompt; ``completion_budget`` the most
        completion tokens the client allows (``None``: it did not say).
        ``body`` is the OpenAI-shaped body about to go upstream: policies and,
        for requests that produce a completion (``completes``), the client's
        token cap may change it. ``ceiling_usd`` is the client's cost ceiling
        (``X-Max-Cost-USD``): only targets whose quote fits under it may answer.
        ``budget_fields`` are the body's names for the completion budget.
        """
        record.alias = record.requested_model = model
        if use_case is not None:
            use_case = record.use_case = use_case[:_MAX_USE_CASE]
        try:
            ticket = self._route(record, client, model, prompt, use_case)
            if self.policies.rules:
                await self._apply_policies(record, client, ticket, body, use_case)
            self._estimate(
                ticket, client, body, completion_budget, completes, ceiling_usd, budget_fields
            )
        except GatewayError as exc:
            exc.headers.update(await self.quota_headers(record.client_id, client))
            raise with_rule_fields(exc, client) from None
        if client.id is not None:
            await self._hold_budget(record, client, ticket)
        decision = await self._count(record.client_id, client, ticket)
        ticket.headers = limit_headers(client, decision.quota)
        if decision.allowed:
            ticket.reservation = decision.reservation
        else:
            await self._refused(record, client, ticket, decision)
        return ticket

    def _route(
        self, record: CallRecord, client: Client, model: str, prompt: int, use_case: str | None
    ) -> Ticket:
        """The request's route (rules, then alias), within the client's allow-list."""
        route, rule = self.router.resolve(model, record.client_id, use_case, prompt)
        record.alias, record.route = route.name, rule
        client.check_model(route.name)
        return Ticket(model, route, prompt, 0, None)

    def _estimate(
        self,
        ticket: Ticket,
        client: Client,
        body: dict[str, Any],
        completion_budget: int | None,
        completes: bool,
        ceiling_usd: float | None,
        budget_fields: tuple[str, ...],
    ) -> None:
        """The prompt cap, the completion estimate (under the client's token cap), the ceiling."""
        prompt = ticket.prompt_estimate
        cap = self.config.max_prompt_tokens
        if cap is not None and prompt > cap:
            raise PromptTooLarge(
                f"The prompt is about {prompt} tokens; the limit is {cap}.", param="messages"
            )
        if completes:
            capped = client.cap_completion(body, completion_budget, budget_fields)
            ticket.body_changed |= capped != completion_budget
            completion_budget = capped
        ticket.completion_estimate = (
            completion_budget if completion_budget is not None else client.reserve_completion_tokens
        )
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

    async def _hold_budget(self, record: CallRecord, client: Client, ticket: Ticket) -> None:
        """Hold the request's estimated cost (at the first target's price); refuse over budget."""
        assert client.id is not None
        first = ticket.within[0] if ticket.within else ticket.route.group[0]
        estimate = (
            self.prices.ceiling_usd(
                first.provider, first.model, ticket.prompt_estimate, ticket.completion_estimate
            )
            or 0.0
        )
        verdict = await self.spend.admit(client.id, client.budget, estimate)
        if not verdict.allowed:
            assert client.budget is not None
            over = budget_refusal(client.id, client.budget, verdict)
            if client.budget_shadow:
                note_shadow(record, over)
                verdict = await self.spend.admit(client.id, None, estimate)
            else:
                over.headers.update(await self.quota_headers(record.client_id, client))
                raise with_rule_fields(over, client)
        ticket.hold = verdict.hold

    async def _count(self, client_id: str, client: Client, ticket: Ticket) -> Decision:
        """The limiter's decision; a refused request of a client (or alias) that may wait for
        capacity waits in the queue (behind the client's earlier waiters)."""
        limits = client.limits
        reserve = ticket.prompt_estimate + ticket.completion_estimate
        if limits.tokens_per_minute is not None:
            # max_tokens is a ceiling, not a forecast: a request asking for more than the
            # whole minute's tokens still runs, alone in an otherwise empty window.
            reserve = min(reserve, limits.tokens_per_minute)
        queue = self.queue
        timeout = client.queue_timeout_s or ticket.route.queue_timeout_s
        decision: Decision | None = None
        if timeout is None or client.rate_shadow or not queue.queued(client_id):
            decision = await self.limiter.admit(client_id, limits, reserve)
            if (
                decision.allowed
                or timeout is None
                or client.rate_shadow
                or decision.exceeded == "unavailable"  # a store that is down: no use waiting
            ):
                return decision
        return await queue.wait(
            client_id, limits, reserve, decision, timeout_s=timeout,
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
        if ticket.hold is not None:
            await self.spend.settle(ticket.hold, 0.0)
        error.headers.update(ticket.headers)
        raise with_rule_fields(error, client)

    async def quota_headers(self, client_id: str, client: Client) -> dict[str, str]:
        """The client's limit headers as they stand, counting nothing."""
        return limit_headers(client, await self.limiter.peek(client_id, client.limits))


def limit_headers(client: Client, quota: Quota) -> dict[str, str]:
    """The client's limits and what remains: ``x-ratelimit-*`` and the IETF fields."""
    limits = client.limits
    headers = {
        "x-ratelimit-limit-requests": str(limits.requests_per_minute),
        "x-ratelimit-remaining-requests": str(quota.remaining_requests),
    }
    if limits.tokens_per_minute is not None:
        headers["x-ratelimit-limit-tokens"] = str(limits.tokens_per_minute)
        headers["x-ratelimit-remaining-tokens"] = str(quota.remaining_tokens)
    fields = client.fields
    if fields is not None:
        headers[POLICY] = fields.policy
        headers[STATE] = fields.state(quota)
    return headers
