"""The request pipeline: admit, route, call the targets in order, account.

``Gateway`` is what the HTTP layer calls once it has parsed a body and
identified the client. It routes the alias, checks the client's allow-list,
applies the policies, checks the prompt cap and the client's token cap, holds
an estimate of the cost against the client's budget, counts the request
against the client's limits (reserving tokens), tries the alias's targets in
order until one answers, and then settles: tokens reconciled with the real
usage, the real cost charged. It fills in the ``CallRecord``; the caller emits
it (for streams, the stream does when it ends).

One ``Gateway`` serves one config. A reload builds a new one over the same
limiter and spend store (so counters carry over); the old one finishes the
requests it holds (``enter``/``leave``) and then closes its providers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import accounting, tokens
from .config import GatewayConfig
from .errors import (
    GatewayError,
    InvalidRequest,
    PromptTooLarge,
    RateLimited,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from .identity import Client, Identity
from .limiter import Limiter, Limits, Quota
from .models import ChatCompletionRequest
from .policies import Call, Policies, Rule, wants_payload
from .pricing import PriceTable
from .providers import AttemptFailed, Provider, Providers, Usage
from .redaction import scrub_secrets
from .router import Router, Target
from .spend import SpendStore
from .telemetry import CallRecord

T = TypeVar("T")


@dataclass(slots=True)
class Ticket:
    """An admitted request: its route, reservations, matching policies and limit headers."""

    alias: str
    targets: tuple[Target, ...]
    prompt_estimate: int
    reservation: object
    headers: dict[str, str] = field(default_factory=dict)
    completion_budget: int | None = None
    hold: object = None
    call: Call | None = None
    rules: tuple[Rule, ...] = ()


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        providers: Providers,
        limiter: Limiter,
        spend: SpendStore,
        policies: Policies,
    ) -> None:
        self.config = config
        self.providers = providers
        self.limiter = limiter
        self.spend = spend
        self.policies = policies
        self.identity = Identity(config)
        self.router = Router(config)
        self.prices = PriceTable(config)
        self.in_flight = 0
        self._drained: asyncio.Event | None = None

    async def admit(
        self,
        record: CallRecord,
        client: Client,
        request: ChatCompletionRequest,
        body: dict[str, Any],
        use_case: str | None = None,
    ) -> Ticket:
        """Check and count the request; raise a ``GatewayError`` that carries limit headers.

        ``body`` is the body to send upstream: policies and the client's token
        cap may change it.
        """
        alias = request.model
        record.alias = alias
        try:
            targets = self.router.targets(alias)
            client.check_model(alias)
            ticket = Ticket(alias, targets, 0, None)
            if self.policies.rules:
                await self._apply_policies(record, client, ticket, body, use_case)
            self._cap(client, request, body, ticket)
        except GatewayError as exc:
            exc.headers.update(await self.quota_headers(record.client_id, client.limits))
            raise
        limits = client.limits
        reserve = ticket.prompt_estimate + (
            ticket.completion_budget or client.reserve_completion_tokens
        )
        if limits.tokens_per_minute is not None:
            # max_tokens is a ceiling, not a forecast: a request asking for more than the
            # whole minute's tokens still runs, alone in an otherwise empty window.
            reserve = min(reserve, limits.tokens_per_minute)
        if client.id is not None:
            estimate = self._estimate_usd(ticket, reserve - ticket.prompt_estimate)
            verdict = await self.spend.admit(client.id, client.budget, estimate)
            if not verdict.allowed:
                assert client.budget is not None
                over = accounting.refusal(client.id, client.budget, verdict)
                over.headers.update(await self.quota_headers(record.client_id, limits))
                raise over
            ticket.hold = verdict.hold
        decision = await self.limiter.admit(record.client_id, limits, reserve)
        ticket.headers = self._headers(limits, decision.quota)
        if not decision.allowed:
            if ticket.hold is not None:
                await self.spend.settle(ticket.hold, 0.0)
            error = self._refusal(
                record.client_id, limits, decision.exceeded, decision.retry_after_s
            )
            error.headers.update(ticket.headers)
            raise error
        ticket.reservation = decision.reservation
        return ticket

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
            await self.policies.before(call, rules, body)

    def _cap(
        self, client: Client, request: ChatCompletionRequest, body: dict[str, Any], ticket: Ticket
    ) -> None:
        """The prompt cap, then the client's token cap; the estimates go on the ticket."""
        prompt = tokens.prompt_tokens(body["messages"])
        cap = self.config.max_prompt_tokens
        if cap is not None and prompt > cap:
            raise PromptTooLarge(
                f"The prompt is about {prompt} tokens; the limit is {cap}.", param="messages"
            )
        ticket.prompt_estimate = prompt
        ticket.completion_budget = request.completion_budget()
        if client.max_tokens is not None:
            ticket.completion_budget = _cap_completion(request, body, client.max_tokens)

    def _estimate_usd(self, ticket: Ticket, completion: int) -> float:
        first = ticket.targets[0]
        usage = Usage(ticket.prompt_estimate, max(0, completion))
        return accounting.cost_usd(self.prices, first.provider, first.model, usage) or 0.0

    async def settle(self, record: CallRecord, ticket: Ticket, usage: Usage | None) -> None:
        """The end of an admitted request: tokens reconciled, cost computed and charged.

        ``usage`` is ``None`` when no answer was produced: nothing is charged.
        """
        if usage is None:
            await self.limiter.reconcile(ticket.reservation, 0)
            if ticket.hold is not None:
                await self.spend.settle(ticket.hold, 0.0)
            return
        record.prompt_tokens, record.completion_tokens = (
            usage.prompt_tokens,
            usage.completion_tokens,
        )
        cost = accounting.cost_usd(self.prices, record.provider, record.upstream_model, usage)
        record.cost_usd = cost
        await self.limiter.reconcile(ticket.reservation, usage.total_tokens)
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
        await self.policies.after(ticket.call, ticket.rules, record.provider, body, answer, text)

    async def complete(
        self, record: CallRecord, ticket: Ticket, body: dict[str, Any]
    ) -> dict[str, Any]:
        """A non-streamed answer in OpenAI's shape, ``model`` set to the alias, usage filled in."""
        try:
            answer = await self.attempt(
                record, ticket, lambda provider, model: provider.complete(model, body)
            )
        except GatewayError:
            await self.settle(record, ticket, None)
            raise
        except asyncio.CancelledError:
            # The client left: release the budget hold even if the store has to wait.
            await asyncio.shield(self.settle(record, ticket, None))
            raise
        usage = usage_of(answer.get("usage")) or Usage(
            ticket.prompt_estimate, tokens.completion_tokens(_answer_text(answer))
        )
        answer["usage"] = usage.as_dict() | _extra_usage(answer.get("usage"))
        answer["model"] = ticket.alias
        answer.setdefault("object", "chat.completion")
        answer.setdefault("created", int(time.time()))
        answer.setdefault("id", "chatcmpl-" + record.request_id)
        await self.settle(record, ticket, usage)
        if ticket.rules:
            await self.after(record, ticket, body, answer)
        return answer

    async def attempt(
        self,
        record: CallRecord,
        ticket: Ticket,
        call: Callable[[Provider, str], Awaitable[T]],
    ) -> T:
        """Try each target in order until one answers; raise the last failure mapped for clients.

        A target's ``Retry-After`` is honoured, up to ``retry_after_cap_s``,
        before the next target on the same provider.
        """
        last: AttemptFailed | None = None
        previous: Target | None = None
        for target in ticket.targets:
            if (
                last is not None
                and last.retry_after_s
                and previous
                and previous.provider == target.provider
            ):
                await asyncio.sleep(min(last.retry_after_s, self.config.retry_after_cap_s))
            provider = self.providers[target.provider]
            record.targets_tried += 1
            record.provider, record.upstream_model, record.stub = (
                target.provider, target.model, provider.stub,
            )  # fmt: skip
            started = time.perf_counter()
            try:
                return await call(provider, target.model)
            except AttemptFailed as exc:
                last, previous = exc, target
            finally:
                record.upstream_latency_ms = round((time.perf_counter() - started) * 1000, 3)
        assert last is not None  # an alias always has at least one target
        raise self._exhausted(ticket, last)

    async def quota_headers(self, client_id: str, limits: Limits) -> dict[str, str]:
        return self._headers(limits, await self.limiter.peek(client_id, limits))

    def enter(self) -> None:
        """A request starts on this gateway."""
        self.in_flight += 1

    def leave(self) -> None:
        """A request that ``enter``ed has ended (for a stream, when the stream ended)."""
        self.in_flight -= 1
        if self.in_flight == 0 and self._drained is not None:
            self._drained.set()

    async def retire(self) -> None:
        """Wait until the requests this gateway holds have ended, then close its providers."""
        if self.in_flight:
            self._drained = asyncio.Event()
            await self._drained.wait()
        await self.providers.aclose()

    @staticmethod
    def _headers(limits: Limits, quota: Quota) -> dict[str, str]:
        headers = {
            "x-ratelimit-limit-requests": str(limits.requests_per_minute),
            "x-ratelimit-remaining-requests": str(quota.remaining_requests),
        }
        if limits.tokens_per_minute is not None:
            headers["x-ratelimit-limit-tokens"] = str(limits.tokens_per_minute)
            headers["x-ratelimit-remaining-tokens"] = str(quota.remaining_tokens)
        return headers

    @staticmethod
    def _refusal(
        client_id: str, limits: Limits, exceeded: str | None, retry_after_s: int
    ) -> RateLimited:
        if exceeded == "tokens":
            message = (
                f"Token rate exceeded for client_id {client_id}"
                f" ({limits.tokens_per_minute} tokens/min)."
            )
        else:
            message = (
                f"Request rate exceeded for client_id {client_id}"
                f" ({limits.requests_per_minute} req/min)."
            )
        return RateLimited(message, retry_after_s=retry_after_s)

    def _exhausted(self, ticket: Ticket, last: AttemptFailed) -> GatewayError:
        count = len(ticket.targets)
        summary = "The only target" if count == 1 else f"All {count} targets"
        message = f"{summary} for model {ticket.alias!r} failed; last: {last.message}."
        if last.kind == "timeout":
            return UpstreamTimeout(message)
        if last.status == 429:
            retry = (
                {"retry-after": str(max(1, round(last.retry_after_s)))}
                if last.retry_after_s
                else {}
            )
            return UpstreamRateLimited(message, headers=retry)
        return UpstreamError(message)


def _cap_completion(request: ChatCompletionRequest, body: dict[str, Any], cap: int) -> int:
    """Hold the request to the client's ``max_tokens``: refuse more, ask for the cap when silent.

    Returns the completion budget the request now has.
    """
    for name in ("max_completion_tokens", "max_tokens"):
        asked = getattr(request, name)
        if asked is not None and asked > cap:
            raise InvalidRequest(
                f"{name} is {asked}; this client may ask for at most {cap}.", param=name
            )
    asked = request.completion_budget()
    if asked is None:
        body["max_tokens"] = cap
        return cap
    return int(asked)


def usage_of(value: object) -> Usage | None:
    """The upstream's usage, when it gave one with integer counts."""
    if not isinstance(value, dict):
        return None
    prompt, completion = value.get("prompt_tokens"), value.get("completion_tokens")
    if type(prompt) is not int or type(completion) is not int:
        return None
    return Usage(prompt, completion)


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
