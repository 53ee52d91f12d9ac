"""The request pipeline: admit, route, call the targets in order, account.

``Gateway`` is what the HTTP layer calls once it has parsed a body. It
checks the prompt cap, counts the request against the client's limits
(reserving tokens), tries the alias's targets in order until one answers, and
reconciles the token reservation with the real usage. It fills in the
``CallRecord``; the caller emits it (for streams, the stream does when it ends).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import tokens
from .config import GatewayConfig
from .errors import (
    GatewayError,
    LimiterUnavailable,
    PromptTooLarge,
    RateLimited,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from .limiter import Limiter, Limits, Quota
from .models import ChatCompletionRequest
from .providers import AttemptFailed, Provider, Providers, Usage
from .router import Router, Target
from .telemetry import CallRecord

T = TypeVar("T")


@dataclass(slots=True)
class Ticket:
    """An admitted request: its route, its token reservation and its limit headers."""

    alias: str
    targets: tuple[Target, ...]
    prompt_estimate: int
    reservation: object
    headers: dict[str, str] = field(default_factory=dict)


class Gateway:
    def __init__(self, config: GatewayConfig, providers: Providers, limiter: Limiter) -> None:
        self.config = config
        self.providers = providers
        self.limiter = limiter
        self.router = Router(config)
        self.limits = Limits(
            config.rate_limit.requests_per_minute, config.rate_limit.tokens_per_minute
        )

    async def admit(
        self, record: CallRecord, request: ChatCompletionRequest, body: dict[str, Any]
    ) -> Ticket:
        """Route, cap and count the request; raise a ``GatewayError`` that carries limit headers."""
        alias = request.model
        record.alias = alias
        try:
            targets = self.router.targets(alias)
            prompt = tokens.prompt_tokens(body["messages"])
            cap = self.config.max_prompt_tokens
            if cap is not None and prompt > cap:
                raise PromptTooLarge(
                    f"The prompt is about {prompt} tokens; the limit is {cap}.", param="messages"
                )
        except GatewayError as exc:
            exc.headers.update(await self.quota_headers(record.client_id))
            raise
        completion = request.completion_budget() or self.config.rate_limit.reserve_completion_tokens
        reserve = prompt + completion
        if self.limits.tokens_per_minute is not None:
            # max_tokens is a ceiling, not a forecast: a request asking for more than the
            # whole minute's tokens still runs, alone in an otherwise empty window.
            reserve = min(reserve, self.limits.tokens_per_minute)
        decision = await self.limiter.admit(record.client_id, self.limits, reserve)
        headers = self._headers(decision.quota)
        if not decision.allowed:
            error = self._refusal(record.client_id, decision.exceeded, decision.retry_after_s)
            error.headers.update(headers)
            raise error
        return Ticket(alias, targets, prompt, decision.reservation, headers)

    async def complete(
        self, record: CallRecord, ticket: Ticket, body: dict[str, Any]
    ) -> dict[str, Any]:
        """A non-streamed answer in OpenAI's shape, ``model`` set to the alias, usage filled in."""
        try:
            answer = await self.attempt(
                record, ticket, lambda provider, model: provider.complete(model, body)
            )
        except GatewayError:
            await self.limiter.reconcile(ticket.reservation, 0)
            raise
        usage = usage_of(answer.get("usage")) or Usage(
            ticket.prompt_estimate, tokens.completion_tokens(_answer_text(answer))
        )
        answer["usage"] = usage.as_dict() | _extra_usage(answer.get("usage"))
        answer["model"] = ticket.alias
        answer.setdefault("object", "chat.completion")
        answer.setdefault("created", int(time.time()))
        answer.setdefault("id", "chatcmpl-" + record.request_id)
        record.prompt_tokens, record.completion_tokens = (
            usage.prompt_tokens,
            usage.completion_tokens,
        )
        await self.limiter.reconcile(ticket.reservation, usage.total_tokens)
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

    async def quota_headers(self, client_id: str) -> dict[str, str]:
        return self._headers(await self.limiter.peek(client_id, self.limits))

    def _headers(self, quota: Quota) -> dict[str, str]:
        headers = {
            "x-ratelimit-limit-requests": str(self.limits.requests_per_minute),
            "x-ratelimit-remaining-requests": str(quota.remaining_requests),
        }
        if self.limits.tokens_per_minute is not None:
            headers["x-ratelimit-limit-tokens"] = str(self.limits.tokens_per_minute)
            headers["x-ratelimit-remaining-tokens"] = str(quota.remaining_tokens)
        return headers

    def _refusal(self, client_id: str, exceeded: str | None, retry_after_s: int) -> GatewayError:
        if exceeded == "unavailable":
            return LimiterUnavailable(
                "The rate limiter is unavailable, so the request was not served; retry shortly.",
                headers={"retry-after": str(retry_after_s)},
            )
        if exceeded == "tokens":
            message = (
                f"Token rate exceeded for client_id {client_id}"
                f" ({self.limits.tokens_per_minute} tokens/min)."
            )
        else:
            message = (
                f"Request rate exceeded for client_id {client_id}"
                f" ({self.limits.requests_per_minute} req/min)."
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
