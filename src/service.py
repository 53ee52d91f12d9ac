"""The request pipeline: admit, route, call the targets in order, account.

``Gateway`` is what the HTTP layer calls once it has parsed a body and
identified the client. It routes the request (rules, then alias), checks the
client's allow-list, applies the policies, checks the prompt cap and the
client's token cap, holds an estimate of the cost against the client's
budget, counts the request against the client's limits (reserving tokens),
tries the route's targets in order (skipping open breakers, retrying with
backoff, within the deadline) until one answers, and then settles: tokens
reconciled with the real usage, the real cost charged. It fills in the
``CallRecord``; the caller emits it (for streams, the stream does when it
ends).

One ``Gateway`` serves one config. A reload builds a new one over the same
limiter and spend store (so counters carry over); the old one finishes the
requests it holds (``enter``/``leave``) and then closes its providers.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import accounting, tokens
from .config import GatewayConfig, RetryConfig
from .errors import (
    GatewayError,
    PromptTooLarge,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from .identity import Client, Identity
from .limiter import Decision, Limiter, Quota
from .policies import Call, Policies, Rule, wants_payload
from .pricing import PriceTable
from .providers import AttemptFailed, Provider, Providers, Usage
from .quote import quote
from .ratelimit_fields import POLICY, STATE
from .redaction import scrub_secrets
from .refusals import ceiling_refusal, note_shadow, rate_refusal, with_rule_fields
from .routing import Route, Router, Target
from .routing.breaker import now
from .spend import SpendStore
from .telemetry import Attempt, CallRecord, CircuitListener
from .waiting import CapacityQueue, Waiting

T = TypeVar("T")

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

    @property
    def alias(self) -> str:
        return self.route.name


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        providers: Providers,
        limiter: Limiter,
        spend: SpendStore,
        policies: Policies,
        on_circuit: CircuitListener | None = None,
        queue: Waiting | None = None,
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
        self._drained: asyncio.Event | None = None

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
    ) -> Ticket:
        """Check and count a request; raise a ``GatewayError`` that carries limit headers.

        ``prompt`` is the approximate prompt; ``completion_budget`` the most
        completion tokens the client allows (``None``: it did not say).
        ``body`` is the OpenAI-shaped body about to go upstream: policies and,
        for requests that produce a completion (``completes``), the client's
        token cap may change it. ``ceiling_usd`` is the client's cost ceiling
        (``X-Max-Cost-USD``): only targets whose quote fits under it may answer.
        """
        record.alias = record.requested_model = model
        if use_case is not None:
            use_case = record.use_case = use_case[:_MAX_USE_CASE]
        limits = client.limits
        try:
            route, rule = self.router.resolve(model, record.client_id, use_case, prompt)
            record.alias, record.route = route.name, rule
            client.check_model(route.name)
            ticket = Ticket(model, route, prompt, 0, None)
            if self.policies.rules:
                await self._apply_policies(record, client, ticket, body, use_case)
            cap = self.config.max_prompt_tokens
            if cap is not None and prompt > cap:
                raise PromptTooLarge(
                    f"The prompt is about {prompt} tokens; the limit is {cap}.", param="messages"
                )
            if completes:
                completion_budget = client.cap_completion(body, completion_budget)
            completion = (
                completion_budget
                if completion_budget is not None
                else client.reserve_completion_tokens
            )
            ticket.completion_estimate = completion
            if ceiling_usd is not None:
                self._fit_ceiling(ticket, ceiling_usd)
        except GatewayError as exc:
            exc.headers.update(await self.quota_headers(record.client_id, client))
            raise with_rule_fields(exc, client) from None
        reserve = prompt + completion
        if limits.tokens_per_minute is not None:
            # max_tokens is a ceiling, not a forecast: a request asking for more than the
            # whole minute's tokens still runs, alone in an otherwise empty window.
            reserve = min(reserve, limits.tokens_per_minute)
        if client.id is not None:
            await self._hold_budget(record, client, ticket)
        decision = await self._count(record.client_id, client, ticket, reserve)
        ticket.headers = self._headers(client, decision.quota)
        if not decision.allowed:
            error = rate_refusal(record.client_id, client, decision)
            if client.rate_shadow and decision.exceeded != "unavailable":
                note_shadow(record, error)
                return ticket
            if ticket.hold is not None:
                await self.spend.settle(ticket.hold, 0.0)
            error.headers.update(ticket.headers)
            raise with_rule_fields(error, client)
        ticket.reservation = decision.reservation
        return ticket

    async def _count(
        self, client_id: str, client: Client, ticket: Ticket, reserve: int
    ) -> Decision:
        """The limiter's decision; a refused request of a client (or alias) that may wait for
        capacity waits in the queue (behind the client's earlier waiters)."""
        queue = self.queue
        timeout = client.queue_timeout_s or ticket.route.queue_timeout_s
        decision: Decision | None = None
        if timeout is None or client.rate_shadow or not queue.queued(client_id):
            decision = await self.limiter.admit(client_id, client.limits, reserve)
            if (
                decision.allowed
                or timeout is None
                or client.rate_shadow
                or decision.exceeded == "unavailable"  # a store that is down: no use waiting
            ):
                return decision
        return await queue.wait(
            client_id, client.limits, reserve, decision, timeout_s=timeout,
            priority=client.priority, max_length=self.config.max_queue_length,
        )  # fmt: skip

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
            for note in await self.policies.before(call, rules, body):
                record.note_shadow(note)

    async def _hold_budget(self, record: CallRecord, client: Client, ticket: Ticket) -> None:
        """Hold the request's estimated cost (at the first target's price); refuse over budget."""
        assert client.id is not None
        first = ticket.within[0] if ticket.within else ticket.route.group[0]
        usage = Usage(ticket.prompt_estimate, ticket.completion_estimate)
        estimate = accounting.cost_usd(self.prices, first.provider, first.model, usage) or 0.0
        verdict = await self.spend.admit(client.id, client.budget, estimate)
        if not verdict.allowed:
            assert client.budget is not None
            over = accounting.refusal(client.id, client.budget, verdict)
            if client.budget_shadow:
                note_shadow(record, over)
                verdict = await self.spend.admit(client.id, None, estimate)
            else:
                over.headers.update(await self.quota_headers(record.client_id, client))
                raise with_rule_fields(over, client)
        ticket.hold = verdict.hold

    async def settle(self, record: CallRecord, ticket: Ticket, usage: Usage | None) -> None:
        """The end of an admitted request: tokens reconciled, cost computed and charged.

        ``usage`` is ``None`` when no answer was produced: nothing is charged.
        """
        if usage is None:
            await self.limiter.reconcile(ticket.reservation, 0)
            if self.queue.waiting:
                self.queue.notify(record.client_id)
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
        plan = ticket.route.plan(
            ticket.prompt_estimate, ticket.completion_estimate, self.router.rng
        )
        if ticket.within is not None:
            plan = [target for target in plan if target in ticket.within]
        retry = ticket.route.retry
        last: AttemptFailed | None = None
        previous: Target | None = None
        for target in plan:
            breaker = target.breaker
            if not breaker.acquire(now()):
                record.skipped_targets += 1
                continue
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
            attempt = 1
            while True:
                started = time.perf_counter()
                error: str | None = "error"  # how the attempt ended, for its span and metric
                wait: float | None = None
                try:
                    result = await call(provider, target.model)
                    error = None
                except AttemptFailed as exc:
                    last, previous = exc, target
                    error = exc.kind if exc.status is None else f"http_{exc.status}"
                    closed = breaker.failure(now())
                    record.breaker = breaker.state
                    wait = self._retry_wait(exc, attempt, retry, closed, deadline_at)
                except UpstreamRejected as exc:
                    # A refusal of the request itself says the target is up.
                    error = exc.type
                    breaker.success()
                    record.breaker = breaker.state
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
                if wait is None:
                    break
                await asyncio.sleep(wait)
                attempt += 1
                record.retries += 1
        if last is None:
            raise self._unavailable(ticket)
        raise self._exhausted(ticket, len(plan), last)

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

    async def quota_headers(self, client_id: str, client: Client) -> dict[str, str]:
        return self._headers(client, await self.limiter.peek(client_id, client.limits))

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
    def _headers(client: Client, quota: Quota) -> dict[str, str]:
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

    def _unavailable(self, ticket: Ticket) -> UpstreamUnavailable:
        moment = now()
        waits = [
            t.breaker.report(moment)["retry_in_s"]
            for t in (*ticket.route.group, *ticket.route.fallbacks)
        ]
        retry_in = min((w for w in waits if isinstance(w, float)), default=1.0)
        return UpstreamUnavailable(
            f"Every target for model {ticket.model!r} is cooling down after repeated failures"
            " (circuit open); retry later.",
            headers={"retry-after": str(max(1, math.ceil(retry_in)))},
        )

    def _exhausted(self, ticket: Ticket, count: int, last: AttemptFailed) -> GatewayError:
        summary = "The only target" if count == 1 else f"All {count} targets"
        message = f"{summary} for model {ticket.model!r} failed; last: {last.message}."
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
