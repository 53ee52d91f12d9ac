"""Cost and budgets: what an answer cost, and the refusal of a client over budget.

The cost of an answer is its real usage at the price of the provider model
that answered (``pricing``); a model with no price has no cost (``None``:
reported as unknown, counted as nothing against a budget). Before the
upstream call the request holds an estimate (its prompt and completion
reservation at the primary target's price) against the client's budget; the
real cost replaces it when the answer ends (``spend.SpendStore``).
"""

from __future__ import annotations

import calendar
import time

from ..config import BudgetConfig, PriceConfig
from ..errors import BudgetExceeded, RuleInfo
from ..providers import Usage
from ..state.spend import BudgetDecision
from ..state.spend.ledger import DAY_S
from .pricing import PriceTable

COST_HEADER = "x-gateway-cost-usd"


def cost_usd(
    prices: PriceTable, provider: str | None, model: str | None, usage: Usage
) -> float | None:
    """The cost of one answer; ``None`` when the model has no price."""
    if provider is None or model is None:
        return None
    return prices.cost_usd(provider, model, usage.prompt_tokens, usage.completion_tokens)


def usage_cost(price: PriceConfig, usage: Usage) -> float:
    return (
        usage.prompt_tokens * price.input_usd_per_mtok
        + usage.completion_tokens * price.output_usd_per_mtok
    ) / 1_000_000


def format_usd(usd: float) -> str:
    """A cost as the header carries it: plain decimal, at most 10 places, no exponent."""
    if not usd:
        return "0"
    return f"{usd:.10f}".rstrip("0").rstrip(".") or "0"


def refusal(client_id: str, budget: BudgetConfig, decision: BudgetDecision) -> BudgetExceeded:
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
