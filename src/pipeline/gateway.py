"""The request pipeline behind one config: ``Gateway``, the facade the HTTP layer calls.

Once it has parsed a body and identified the client, the HTTP layer calls
``admit`` (``admission.py``: route, allow-list, policies, prompt and token
caps, cost ceiling, budget hold, limiter), then ``complete`` or ``embed``
here, or ``attempt`` for a stream (``attempts.py``: the targets in order, with
breakers, retries, backoff and the deadline), and ``settle`` and ``after``
(``settlement.py``: tokens reconciled, cost charged, the policies' response
phase). ``complete`` and ``embed`` give the answer its OpenAI shape and its
usage. The steps fill in the ``CallRecord``; the caller emits it (for
streams, the stream does when it ends).

One ``Gateway`` serves one config. A reload builds a new one over the same
limiter and spend store (so counters carry over); the old one finishes the
requests it holds (``enter``/``leave``) and then closes its providers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..config import GatewayConfig
from ..errors import GatewayError
from ..governance.identity import Identity
from ..governance.policies import Policies
from ..observability.metrics import InFlight
from ..observability.telemetry import CallRecord, CircuitListener
from ..providers import Provider, Providers, Usage
from ..routing import Router
from ..state.limiter import Limiter
from ..state.spend import SpendStore
from . import tokens
from .admission import Admission, Ticket
from .attempts import Attempts
from .cost import PriceTable
from .settlement import Settlement, usage_of
from .waiting import CapacityQueue, Waiting

# ``Ticket`` is part of the facade's contract: handlers hold one between ``admit`` and the rest.
__all__ = ["Gateway", "Ticket"]


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
        self.admit = admission.admit
        self.quota_headers = admission.quota_headers
        self.attempt = Attempts(config, providers, self.router).attempt
        self.settle = settlement.settle
        self.after = settlement.after

    async def complete(
        self, record: CallRecord, ticket: Ticket, body: dict[str, Any]
    ) -> dict[str, Any]:
        """A non-streamed answer in OpenAI's shape, ``model`` set to the model asked for."""
        answer = await self._answer(
            record, ticket, lambda provider, model: provider.complete(model, body)
        )
        usage = usage_of(answer.get("usage")) or Usage(
            ticket.prompt_estimate, tokens.completion_tokens(_answer_text(answer))
        )
        answer["usage"] = usage.as_dict() | _extra_usage(answer.get("usage"))
        answer["model"] = ticket.model
        answer.setdefault("object", "chat.completion")
        answer.setdefault("created", int(time.time()))
        answer.setdefault("id", "chatcmpl-" + record.request_id)
        await self.settle(record, ticket, usage)
        if ticket.rules:
            await self.after(record, ticket, body, answer)
        return answer

    async def embed(
        self, record: CallRecord, ticket: Ticket, body: dict[str, Any]
    ) -> dict[str, Any]:
        """An embeddings answer in OpenAI's shape, ``model`` set to the model asked for."""
        answer = await self._answer(
            record, ticket, lambda provider, model: provider.embed(model, body)
        )
        reported = answer.get("usage")
        prompt = reported.get("prompt_tokens") if isinstance(reported, dict) else None
        usage = Usage(prompt if type(prompt) is int else ticket.prompt_estimate, 0)
        answer["usage"] = {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens}
        answer["model"] = ticket.model
        answer.setdefault("object", "list")
        await self.settle(record, ticket, usage)
        if ticket.rules:
            await self.after(record, ticket, body, answer)
        return answer

    async def _answer(
        self,
        record: CallRecord,
        ticket: Ticket,
        call: Callable[[Provider, str], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any]:
        """``attempt``, releasing the request's holds when it produces no answer."""
        try:
            return await self.attempt(record, ticket, call)
        except GatewayError:
            await self.settle(record, ticket, None)
            raise
        except asyncio.CancelledError:
            # The client left: release the budget hold even if the store has to wait.
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


def _extra_usage(value: object) -> dict[str, Any]:
    """Detail fields of the upstream's usage (cached tokens, reasoning tokens), kept as sent."""
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if k.endswith("_details")}


def _answer_text(answer: dict[str, Any]) -> str:
    texts = []
    for choice in answer.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            texts.append(tokens.content_text(message.get("content")))
    return " ".join(texts)
