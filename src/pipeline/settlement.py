"""Settlement: the end of an admitted request, answered or not.

``Settlement.settle`` fills in the record's usage, reconciles the token
reservation with the real usage (0 when nothing was produced), computes the
cost and replaces the budget hold with it, and wakes the client's next waiter
for capacity. ``Settlement.after`` is the policies' response phase.
"""

from __future__ import annotations

from typing import Any

from ..governance.policies import Policies, wants_payload
from ..governance.redaction import scrub_secrets
from ..observability.telemetry import CallRecord
from ..providers import Usage
from ..state.limiter import Limiter
from ..state.spend import SpendStore
from .admission import Ticket
from .cost import PriceTable
from .waiting import Waiting


class Settlement:
    """The settlement step of one ``Gateway`` (one config), over the shared limiter and spend."""

    def __init__(
        self,
        prices: PriceTable,
        policies: Policies,
        limiter: Limiter,
        spend: SpendStore,
        queue: Waiting,
    ) -> None:
        self.prices = prices
        self.policies = policies
        self.limiter = limiter
        self.spend = spend
        self.queue = queue

    async def settle(self, record: CallRecord, ticket: Ticket, usage: Usage | None) -> None:
        """The end of an admitted request: tokens reconciled, cost computed and charged.

        ``usage`` is ``None`` when no answer was produced: nothing is charged.
        Only the first call for a ticket counts; later ones do nothing, so every
        path that ends a request may settle it without double-counting.
        """
        if ticket.settled:
            return
        ticket.settled = True
        if usage is None:
            await self.limiter.reconcile(ticket.reservation, 0)
            if self.queue.waiting:
                self.queue.notify(record.client_id)
            if ticket.hold is not None:
                await self.spend.settle(ticket.hold, 0.0)
            return
        record.usage(usage)
        cost = self.prices.cost_usd(record.provider, record.upstream_model, usage)
        record.cost_usd = cost
        await self.limiter.reconcile(ticket.reservation, usage.total_tokens)
        if self.queue.waiting:
            self.queue.notify(record.client_id)
        if ticket.hold is not None:
            await self.spend.settle(ticket.hold, cost or 0.0)

    async def after(
        self,
        record: CallRecord,
        ticket: Ticket,
        body: dict[str, Any],
        answer: dict[str, Any] | None,
        text: str | None = None,
    ) -> None:
        """The policies' response phase, and the payload for ``log_payload`` rules."""
        if ticket.call is None or not ticket.rules:
            return
        if wants_payload(ticket.rules):
            response = answer if answer is not None else {"content": text}
            record.payload = scrub_secrets({"request": body, "response": response})
        notes = await self.policies.after(
            ticket.call, ticket.rules, record.provider, body, answer, text
        )
        for note in notes:
            record.note_shadow(note)


def wants_text(ticket: Ticket) -> bool:
    """Whether the response phase reads the answer's text: a hook, or a ``log_payload`` rule."""
    if ticket.call is None:
        return False
    return wants_payload(ticket.rules) or any(rule.hook is not None for rule in ticket.rules)
