"""Refusals by rule: rate and token limits, the cost ceiling, and what shadow rules record.

Every refusal by a rule carries a ``RuleInfo`` (its name in the config, its
scope, what remains, when it resets), which the answer renders in the error
body and (at the edge) in the IETF ``RateLimit-Policy``/``RateLimit`` fields. A rule in
``shadow`` mode refuses nothing: the refusal it would have made is noted on
the telemetry record instead (``shadow`` in the line).
"""

from __future__ import annotations

import calendar
import time

from ..config import BudgetConfig
from ..errors import (
    BudgetExceeded,
    CostCeilingExceeded,
    GatewayError,
    InvalidRequest,
    LimiterUnavailable,
    RateLimited,
    RuleInfo,
)
from ..governance.identity import Client
from ..observability.telemetry import CallRecord
from ..state.limiter import WINDOW_S, Decision
from ..state.spend import BudgetDecision
from ..state.spend.ledger import DAY_S
from .cost import Quote, format_usd

# The request header of a client's cost ceiling, named as the param of its errors.
CEILING_HEADER = "x-max-cost-usd"


def rate_refusal(client_id: str, client: Client, decision: Decision) -> GatewayError:
    """429 ``rate_limit_exceeded`` for the limit ``decision`` names, with its rule and fields;
    503 ``limiter_unavailable`` when the shared limit store is down (and set to fail closed)."""
    limits, quota = client.limits, decision.quota
    if decision.exceeded == "unavailable":
        return LimiterUnavailable(
            "The rate limiter is unavailable, so the request was not served; retry shortly.",
            retry_after_s=decision.retry_after_s,
        )
    if decision.exceeded == "tokens":
        message = (
            f"Token rate exceeded for client_id {client_id}"
            f" ({limits.tokens_per_minute} tokens/min)."
        )
        rule = RuleInfo(
            f"{client.rate_rule}.tokens_per_minute", "tokens", f"client:{client_id}",
            limits.tokens_per_minute, quota.remaining_tokens or 0, "tokens",
            decision.retry_after_s, int(WINDOW_S),
        )  # fmt: skip
    else:
        message = (
            f"Request rate exceeded for client_id {client_id}"
            f" ({limits.requests_per_minute} req/min)."
        )
        rule = RuleInfo(
            f"{client.rate_rule}.requests_per_minute", "requests", f"client:{client_id}",
            limits.requests_per_minute, quota.remaining_requests, "requests",
            decision.retry_after_s, int(WINDOW_S),
        )  # fmt: skip
    error = RateLimited(message, retry_after_s=decision.retry_after_s)
    error.rule = rule
    return error


def minute_refusal(
    client_id: str, client: Client, prompt: int, completion: int, choices: int
) -> GatewayError | None:
    """400 for a request of several choices that could never fit the client's tokens a minute.

    A request of one choice whose estimate is over the limit still runs, alone in
    an otherwise empty window (its reservation capped at the limit): ``max_tokens``
    is a ceiling, not a forecast. ``n`` is not allowed to multiply past the limit.
    """
    limit = client.limits.tokens_per_minute
    if limit is None or choices == 1 or prompt + completion <= limit:
        return None
    return InvalidRequest(
        f"n is {choices}: with about {prompt} prompt tokens and up to {completion // choices}"
        f" completion tokens per choice, the request may use {prompt + completion} tokens, more"
        f" than the {limit} tokens a minute client_id {client_id} may use; it can never be"
        " admitted. Lower n or max_tokens.",
        param="n",
    )


def ceiling_refusal(quote: Quote, ceiling_usd: float) -> CostCeilingExceeded:
    """400 ``cost_ceiling_exceeded``: no target of the route fits under the client's ceiling."""
    error = CostCeilingExceeded(
        f"The request's quote is {quote.describe()}, above its X-Max-Cost-USD"
        f" ceiling of ${format_usd(ceiling_usd)}; no target of the model fits under it.",
        param=CEILING_HEADER,
    )
    error.rule = RuleInfo(
        "X-Max-Cost-USD", "cost_ceiling", "request", ceiling_usd, ceiling_usd, "usd-micros", None
    )
    return error


def note_shadow(record: CallRecord, error: GatewayError) -> None:
    """A shadow rule would have refused: say so on the record (and so in the telemetry line)."""
    rule = error.rule
    note = {
        "rule": rule.name if rule is not None else error.type,
        "kind": rule.kind if rule is not None else "policy",
        "would": error.type,
        "status": error.status,
        "message": error.message,
    }
    record.note_shadow(note)


def budget_refusal(
    client_id: str, budget: BudgetConfig, decision: BudgetDecision
) -> BudgetExceeded:
    """429 ``budget_exceeded`` naming the budget and the spend, retryable at its reset; its
    ``rule`` is ``clients.<id>.budget.<field>``."""
    spend = decision.spend
    in_flight = f" (of which ${spend.held_usd:.4f} in flight)" if spend.held_usd > 0 else ""
    if decision.exceeded == "usd_per_day":
        limit, spent, period = budget.usd_per_day, spend.day_usd, "today"
        when = "at 00:00 UTC"
    else:
        limit, spent, period = budget.usd_per_month, spend.month_usd, "this month"
        when = "on the 1st at 00:00 UTC"
    message = (
        f"Budget exceeded for client_id {client_id}: {decision.exceeded} is ${limit:.2f}"
        f" and ${spent:.4f} is spent {period}{in_flight}. It resets {when}."
    )
    reset_s = reset_in(decision.exceeded or "usd_per_month", time.time())
    error = BudgetExceeded(message, retry_after_s=reset_s)
    error.rule = RuleInfo(
        f"clients.{client_id}.budget.{decision.exceeded}", "budget", f"client:{client_id}",
        limit, max(0.0, (limit or 0.0) - spent), "usd-micros", reset_s,
    )  # fmt: skip
    return error


def reset_in(budget_field: str, now: float) -> int:
    """Whole seconds (at least 1) until the budget ``usd_per_day`` or ``usd_per_month`` resets."""
    if budget_field == "usd_per_day":
        reset = float((int(now // DAY_S) + 1) * DAY_S)
    else:
        reset = _next_month(now)
    return max(1, int(reset - now))


def _next_month(now: float) -> float:
    moment = time.gmtime(now)
    year, month = moment.tm_year + moment.tm_mon // 12, moment.tm_mon % 12 + 1
    return float(calendar.timegm((year, month, 1, 0, 0, 0)))
