"""``POST /v1/explain``: what the gateway would do with a chat request, without doing it.

It takes the body and headers of ``/v1/chat/completions`` and answers with
the decisions of the pipeline, in its order: the client, the routing rule
and alias, the targets in the order they would be tried (with their circuit
states and quotes), every policy that matches and what it would do, each
limit and budget with what remains, the approximate prompt, the price quote,
and the outcome: ``allowed``, or the refusal the request would get. No
provider is called, no tokens or budget are counted (the explain itself is
one request, below), no hook runs, and no telemetry line is written.

A client's explain counts as one request against its request limit (no
tokens), before its body is read: over the limit it is refused (429) like
any call, and the limits it reports include it. A client key explains its
own requests only. The admin key (the variable
named by ``admin_key_env``) explains any client's (named by ``X-Client-Id``)
and sees more: every policy and routing rule, matched or not, and each
target's breaker in full.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..errors import ContentBlocked, GatewayError, InvalidRequest, PolicyDenied
from ..governance.identity import Client
from ..governance.policies import Rule
from ..governance.redaction import prompt_texts
from ..observability.telemetry import CallRecord
from ..pipeline import tokens
from ..pipeline.admission import CHAT_BUDGET_FIELDS
from ..pipeline.cost import Quote, quote
from ..pipeline.gateway import Gateway
from ..pipeline.refusals import (
    budget_refusal,
    rate_refusal,
    reset_in,
)
from ..routing.breaker import now
from ..state.limiter import WINDOW_S, Decision
from ..state.spend import BudgetDecision, Spend
from .admin import AdminGuard
from .dialects import OPENAI
from .handling import ceiling_of, client_for, client_of, use_case_of
from .schemas import ChatCompletionRequest, validate_body
from .wire import json_response, new_request_id, read_json


async def explain(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    try:
        guard: AdminGuard = request.app.state.admin
        admin = guard.is_admin(request)
        client_id, client = _client(gateway, request, admin)
        if not admin:  # a client's explain is a request like any other (no tokens)
            over = await gateway.count_request(client_id, client)
            if over is not None:
                raise over
        body = await read_json(request, gateway.config)
        chat = await validate_body(ChatCompletionRequest, body)
        report = await Explanation(gateway, client_id, client, admin).run(
            chat, body, use_case_of(request), ceiling_of(request)
        )
    except GatewayError as exc:
        return OPENAI.error_response(exc)
    return json_response(report)


def _client(gateway: Gateway, request: Request, admin: bool) -> tuple[str, Client]:
    identity = gateway.identity
    if not admin:
        record = CallRecord(new_request_id(), "/v1/explain", "anonymous")
        client = client_for(gateway, request, record)
        return record.client_id, client
    named = client_of(request)
    if identity.open:
        return named, identity.default
    found = identity.by_id.get(named)
    if found is None:
        raise InvalidRequest(
            "With the admin key, name a configured client in X-Client-Id"
            f" ({named[:100]!r} is not one).",
            param="x-client-id",
        )
    return named, found


class Explanation:
    """One explain answer: the steps of ``Gateway.admit`` that count nothing, run by admission
    itself; the policies' effects (no hook runs) and the budgets and limits as they stand."""

    def __init__(self, gateway: Gateway, client_id: str, client: Client, admin: bool) -> None:
        self.gateway = gateway
        self.client_id = client_id
        self.client = client
        self.admin = admin
        self.refusal: GatewayError | None = None
        self.shadow: list[dict[str, Any]] = []

    def _refuse(self, error: GatewayError, shadow: bool = False) -> None:
        """The first refusal decides; a shadow rule's only goes into ``shadow``."""
        if shadow:
            self.shadow.append({"type": error.type, "message": error.message})
        elif self.refusal is None:
            self.refusal = error

    async def run(
        self,
        chat: ChatCompletionRequest,
        body: dict[str, Any],
        use_case: str | None,
        ceiling: float | None,
    ) -> dict[str, Any]:
        gateway, client = self.gateway, self.client
        admission = gateway.admission
        record = CallRecord(new_request_id(), "/v1/explain", self.client_id)
        prompt = await tokens.prompt_tokens_async(body["messages"])
        report: dict[str, Any] = {
            "object": "explanation",
            "viewer": "admin" if self.admin else "client",
            "client": {"id": self.client_id, "tags": dict(client.tags) if self.admin else None},
            "requested_model": chat.model,
            "use_case": use_case,
            "prompt_tokens": prompt,
        }
        try:
            ticket = admission.route(record, chat.model, prompt, use_case)
        except GatewayError as exc:
            self._refuse(exc)
            report["route"] = None
            return self._finish(report)
        route = ticket.route
        report["route"] = {"rule": record.route, "alias": route.name, "strategy": _strategy(route)}
        if self.admin:
            report["route"]["rules"] = gateway.router.rules_report(
                chat.model, self.client_id, use_case, prompt
            )
        try:
            client.check_model(route.name)
        except GatewayError as exc:
            self._refuse(exc)
        report["policies"] = self._policies(route.name, use_case, body)
        choices = chat.choices()
        steps: tuple[Callable[[], None], ...] = (
            lambda: admission.check_prompt(ticket),
            lambda: admission.estimate(
                ticket,
                client,
                dict(body),
                chat.completion_budget(),
                True,
                CHAT_BUDGET_FIELDS,
                choices,
            ),
            lambda: admission.fit(record, client, ticket, choices, ceiling),
        )
        for step in steps:
            try:
                step()
            except GatewayError as exc:
                self._refuse(exc)
        for note in record.shadow or ():
            self.shadow.append({"type": note["would"], "message": note["message"]})
        completion = ticket.completion_estimate
        report["completion_tokens"] = completion
        priced = quote(route, gateway.prices, prompt, completion)
        within = None if ceiling is None else priced.within(ceiling)
        report["targets"] = self._targets(route, priced, within, prompt, completion)
        report["quote"] = {
            k: v for k, v in priced.as_dict().items() if k not in ("targets", "prompt_tokens")
        }
        report["cost_ceiling_usd"] = ceiling
        report["budgets"] = await self._budgets()
        report["limits"] = await self._limits(prompt + completion)
        return self._finish(report)

    def _finish(self, report: dict[str, Any]) -> dict[str, Any]:
        error = self.refusal
        report["decision"] = (
            {"allowed": True}
            if error is None
            else {
                "allowed": False,
                "status": error.status,
                "type": error.type,
                "message": error.message,
                "rule": error.rule.as_dict() if error.rule is not None else None,
            }
        )
        report["shadow"] = self.shadow
        return report

    def _policies(self, alias: str, use_case: str | None, body: dict[str, Any]) -> list[Any]:
        policies = self.gateway.policies
        _, matched = policies.select(self.client_id, alias, self.client.tags, use_case)
        shown = policies.rules if self.admin else matched
        texts = prompt_texts(body)
        report = []
        for rule in shown:
            hit = rule in matched
            effect = _effect(rule, texts) if hit else "none (does not match)"
            report.append(
                {
                    "name": rule.name,
                    "action": rule.action,
                    "mode": _mode(rule.shadow),
                    "scope": rule.scope,
                    "matches": hit,
                    "effect": effect,
                }
            )
            if hit and effect in ("deny", "block"):
                self._refuse(_policy_error(rule, effect), rule.shadow)
        return report

    def _targets(
        self,
        route: Any,
        priced: Quote,
        within: tuple[Any, ...] | None,
        prompt: int,
        completion: int,
    ) -> list[dict[str, Any]]:
        costs = {(t.target.provider, t.target.model): t for t in priced.targets}
        moment = now()
        ordered = []
        for target in route.plan(prompt, completion, self.gateway.router.rng):
            cost = costs[(target.provider, target.model)]
            breaker = target.breaker.report(moment)
            entry: dict[str, Any] = {
                "provider": target.provider,
                "model": target.model,
                "role": cost.role,
                "circuit": breaker["state"],
                "cost_usd": cost.cost_usd,
            }
            if within is not None:
                entry["within_ceiling"] = target in within
            if self.admin:
                entry["breaker"] = breaker
            ordered.append(entry)
        return ordered

    async def _budgets(self) -> list[dict[str, Any]]:
        client = self.client
        budget = client.budget
        if client.id is None or budget is None:
            return []
        spend: Spend = await self.gateway.spend.spent(client.id)
        moment = time.time()
        report = []
        for name, limit, spent in (
            ("usd_per_day", budget.usd_per_day, spend.day_usd),
            ("usd_per_month", budget.usd_per_month, spend.month_usd),
        ):
            if limit is None:
                continue
            entry = {
                "rule": f"clients.{client.id}.budget.{name}",
                "mode": budget.mode,
                "limit_usd": limit,
                "spent_usd": spent,
                "remaining_usd": max(0.0, limit - spent),
                "reset_s": reset_in(name, moment),
            }
            report.append(entry)
            if spent >= limit:
                verdict = BudgetDecision(False, spend, name)
                self._refuse(budget_refusal(client.id, budget, verdict), client.budget_shadow)
        return report

    async def _limits(self, reserve: int) -> list[dict[str, Any]]:
        client = self.client
        limits = client.limits
        quota = await self.gateway.limiter.peek(self.client_id, limits)
        mode = _mode(client.rate_shadow)
        report: list[dict[str, Any]] = [
            {
                "rule": f"{client.rate_rule}.requests_per_minute",
                "mode": mode,
                "limit": limits.requests_per_minute,
                "remaining": quota.remaining_requests,
                "window_s": int(WINDOW_S),
            }
        ]
        exceeded = "requests" if quota.remaining_requests < 1 else None
        if limits.tokens_per_minute is not None:
            reserve = min(reserve, limits.tokens_per_minute)
            report.append(
                {
                    "rule": f"{client.rate_rule}.tokens_per_minute",
                    "mode": mode,
                    "limit": limits.tokens_per_minute,
                    "remaining": quota.remaining_tokens,
                    "window_s": int(WINDOW_S),
                    "this_request": reserve,
                }
            )
            if exceeded is None and (quota.remaining_tokens or 0) < reserve:
                exceeded = "tokens"
        if exceeded is not None:
            over = rate_refusal(self.client_id, client, Decision(False, quota, exceeded, 0))
            self._refuse(over, client.rate_shadow)
        timeout = client.queue_timeout_s
        if timeout is not None:
            report[0]["queue_timeout_ms"] = round(timeout * 1000)
        return report


def _mode(shadow: bool) -> str:
    return "shadow" if shadow else "enforce"


def _strategy(route: Any) -> str:
    if len(route.group) == 1:
        return "single"
    return "cheapest" if route.cheapest else "weighted"


def _effect(rule: Rule, texts: list[str]) -> str:
    """What a matching rule would do to this request (hooks are not run)."""
    if rule.action == "deny":
        return "deny"
    if rule.action in ("block_pattern", "redact"):
        if any(rule.pattern.search(text) for text in texts):
            return "block" if rule.action == "block_pattern" else "redact"
        return "none (no pattern matches)"
    if rule.action == "log_payload":
        return "log_payload"
    return "hook (not run by explain)"


def _policy_error(rule: Rule, effect: str) -> GatewayError:
    error: GatewayError
    if effect == "deny":
        error = PolicyDenied(f"Request denied by policy {rule.name!r}.")
    else:
        error = ContentBlocked(f"The request contains content blocked by policy {rule.name!r}.")
    error.rule = rule.info
    return error
