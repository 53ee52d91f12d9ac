"""The request pipeline behind one config: ``Gateway``, the facade the HTTP layer calls.

Once it has parsed a body and identified the client, the HTTP layer calls
``admit`` (``admission.py``: route, allow-list, policies, prompt and token
caps, cost ceiling, budget hold, limiter), then ``complete``
here, or ``attempt`` for a stream (``attempts.py``: the targets in order, with
breakers, retries, backoff and the deadline; ``upstream.py``: each attempt
passed through or translated), and ``settle`` and ``after``
(``settlement.py``: tokens reconciled, cost charged, the policies' response
phase). ``complete`` reads the answer's usage through its operation and
gives the answer the model the client asked for. The steps fill in the
``CallRecord``; the caller emits it (for streams, the stream does when it
ends).

One ``Gateway`` serves one config. A reload builds a new one over the same
limiter and spend store (so counters carry over); the old one finishes the
requests it holds (``enter``/``leave``) and then closes its providers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from ..config import GatewayConfig
from ..governance.identity import Identity
from ..governance.policies import Policies
from ..observability.metrics import InFlight
from ..observability.telemetry import CallRecord, CircuitListener
from ..providers import Providers, Usage
from ..providers.operations import with_model
from ..routing import Router
from ..state.limiter import Limiter
from ..state.spend import SpendStore
from ..translate import Context
from . import tokens, upstream
from .admission import Admission, Ticket
from .attempts import Attempts
from .cost import PriceTable
from .settlement import Settlement
from .upstream import Inbound
from .waiting import CapacityQueue, Waiting

# ``Ticket`` is part of the facade's contract: handlers hold one between ``admit`` and the rest.

__all__ = ["Answered", "Gateway", "Inbound", "Ticket"]


@dataclass(slots=True)
class Answered:
    """A whole answer for the client: the object, and its bytes when they need no
    re-serialising (``raw``: the provider's own, model replaced)."""

    data: dict[str, Any]
    raw: bytes | None = None

    def content(self) -> bytes:
        return self.raw if self.raw is not None else orjson.dumps(self.data)


class Gateway:
    """The pipeline's steps over one config, and the requests it holds.

    The steps share the gateway's router, prices, policies, limiter, spend
    store and queue; these are fixed for the gateway's life (a new config is
    a new ``Gateway``).
    """

    def __init__(
        self,
        config: GatewayConfig,
        providers: Providers,
        limiter: Limiter,
        spend: SpendStore,
        policies: Policies,
        on_circuit: CircuitListener | None = None,
        queue: Waiting | None = None,
        process_in_flight: InFlight | None = None,
    ) -> None:
        self.config = config
        self.providers = providers
        self.limiter = limiter
        self.spend = spend
        self.policies = policies
        self.queue: Waiting = queue or CapacityQueue(limiter)
        self.identity = Identity(config)
        self.prices = PriceTable(config)
        self.router = Router(config, self.prices, on_circuit)
        self.in_flight = 0
        # Shared by every gateway of the process (a reload's old and new ones): its gauge
        # and the dashboard's figure.
        self.process_in_flight = process_in_flight or InFlight(None)
        self._drained: asyncio.Event | None = None
        admission = Admission(
            config, self.router, self.prices, policies, limiter, spend, self.queue
        )
        settlement = Settlement(self.prices, policies, limiter, spend, self.queue)
        # The steps bound once, so that calling one through the facade costs no more
        # than calling a method of the Gateway.
        self.admission = admission
        self.admit = admission.admit
        self.quota = admission.quota
        self.count_refusal = admission.count_refusal
        self.count_request = admission.count_request
        self.refuse_over_limit = admission.refuse_over_limit
        self.attempt = Attempts(config, providers, self.router).attempt
        self.settle = settlement.settle
        self.after = settlement.after

    async def complete(self, record: CallRecord, ticket: Ticket, inbound: Inbound) -> Answered:
        """A non-streamed answer in the inbound operation's shape, naming the model asked for.

        Passed through, its bytes are the provider's with the model replaced,
        unless the gateway had to add to it (usage the upstream did not
        report) or a policy hook may change it.
        """
        async with self.settling(record, ticket):
            called = await self.attempt(
                record, ticket, lambda provider, model: upstream.call(inbound, provider, model)
            )
            op, data = called.op, called.reply.data
            usage = op.usage(data) or Usage(
                ticket.prompt_estimate, tokens.completion_tokens(op.output_text(data))
            )
            raw = called.reply.raw
            if called.translator is not None:
                context = Context(
                    ticket.model, record.request_id, ticket.prompt_estimate, inbound.body
                )
                data, raw = called.translator.answer(data, usage, context), None
            client_op = inbound.op
            reported = client_op.usage(data) is not None
            if client_op.finish(data, usage, reported, record.request_id):
                raw = None
            named = data.get("model")
            client_op.set_model(data, ticket.model)
            if raw is not None and data.get("model") != named:
                raw = with_model(raw, named, ticket.model) if isinstance(named, str) else None
            await self.settle(record, ticket, usage)
        if ticket.rules:
            raw = None  # a response hook may change the answer
            await self.after(record, ticket, inbound.body, data)
        return Answered(data, raw)

    @asynccontextmanager
    async def settling(self, record: CallRecord, ticket: Ticket) -> AsyncIterator[None]:
        """Release what ``ticket`` holds (tokens, budget hold) if the block ends without
        settling it, however it ends: a refusal, a cancellation, any exception.

        The release is shielded, so a client leaving cannot cut it short; the
        exception goes on to the caller.
        """
        try:
            yield
        except BaseException:
            if not ticket.settled:
                await asyncio.shield(self.settle(record, ticket, None))
            raise

    def enter(self) -> None:
        """A request starts on this gateway: the one place requests in flight are counted."""
        self.in_flight += 1
        self.process_in_flight.enter()

    def leave(self) -> None:
        """A request that ``enter``ed has ended (for a stream, when the stream ended)."""
        self.in_flight -= 1
        self.process_in_flight.leave()
        if self.in_flight == 0 and self._drained is not None:
            self._drained.set()

    async def retire(self) -> None:
        """Wait until the requests this gateway holds have ended, then close its providers."""
        if self.in_flight:
            self._drained = asyncio.Event()
            await self._drained.wait()
        await self.providers.aclose()
