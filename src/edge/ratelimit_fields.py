"""The IETF ``RateLimit-Policy`` and ``RateLimit`` fields (draft-ietf-httpapi-ratelimit-headers).

Both are Structured Field lists of items named by a string, the rule's name:

    RateLimit-Policy: "rate_limit.requests_per_minute";q=20;w=60,
                      "rate_limit.tokens_per_minute";q=40000;w=60;qu="tokens"
    RateLimit: "rate_limit.requests_per_minute";r=19, "rate_limit.tokens_per_minute";r=39000

``q`` is the quota, ``w`` the window in seconds, ``qu`` the quota unit
(``requests`` when absent; ``tokens`` for token limits, ``usd-micros`` for
budgets and the cost ceiling, whose quotas must be integers), ``r`` what
remains and ``t`` the seconds until it resets (given on refusals, where the
gateway knows it). A client's policy field is built once per rule and limits.

The pipeline hands the edge a ``Quota`` (on a ``Ticket``, or on the
``GatewayError`` that refused); this module turns it into the answer's
``x-ratelimit-*`` headers and these two fields.
"""

from __future__ import annotations

from functools import lru_cache

from ..errors import GatewayError, RuleInfo
from ..governance.identity import Client
from ..state.limiter import WINDOW_S, Limits, Quota

POLICY = "ratelimit-policy"
STATE = "ratelimit"
_WINDOW = int(WINDOW_S)


def sf_string(value: str) -> str:
    """A Structured Field string: printable ASCII, quotes and backslashes escaped."""
    printable = "".join(c if " " <= c <= "~" else "?" for c in value)
    return '"' + printable.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _integer(value: float | None, unit: str) -> int:
    if value is None:
        return 0
    return round(value * 1_000_000) if unit == "usd-micros" else int(value)


def _unit(unit: str) -> str:
    return "" if unit == "requests" else f";qu={sf_string(unit)}"


def policy_item(rule: RuleInfo) -> str:
    window = f";w={rule.window_s}" if rule.window_s else ""
    return f"{sf_string(rule.name)};q={_integer(rule.limit, rule.unit)}{window}{_unit(rule.unit)}"


def state_item(rule: RuleInfo) -> str:
    reset = f";t={rule.reset_s}" if rule.reset_s is not None else ""
    return f"{sf_string(rule.name)};r={max(0, _integer(rule.remaining, rule.unit))}{reset}"


class LimitFields:
    """The fields of one client's rate limits, the policy part computed once."""

    __slots__ = ("policy", "requests", "tokens")

    def __init__(self, prefix: str, limits: Limits) -> None:
        self.requests = sf_string(f"{prefix}.requests_per_minute")
        items = [f"{self.requests};q={limits.requests_per_minute};w={_WINDOW}"]
        self.tokens: str | None = None
        if limits.tokens_per_minute is not None:
            self.tokens = sf_string(f"{prefix}.tokens_per_minute")
            items.append(f'{self.tokens};q={limits.tokens_per_minute};w={_WINDOW};qu="tokens"')
        self.policy = ", ".join(items)

    def state(self, quota: Quota) -> str:
        state = f"{self.requests};r={quota.remaining_requests}"
        if self.tokens is not None:
            state += f", {self.tokens};r={quota.remaining_tokens}"
        return state


@lru_cache(maxsize=4096)
def limit_fields(rule: str, limits: Limits) -> LimitFields:
    """The fields of the limits at ``rule`` (a client's, or the default), built once."""
    return LimitFields(rule, limits)


def limit_headers(client: Client | None, quota: Quota | None) -> dict[str, str]:
    """The client's limits and what remains: ``x-ratelimit-*`` and the IETF fields."""
    if client is None or quota is None:
        return {}
    limits = client.limits
    headers = {
        "x-ratelimit-limit-requests": str(limits.requests_per_minute),
        "x-ratelimit-remaining-requests": str(quota.remaining_requests),
    }
    if limits.tokens_per_minute is not None:
        headers["x-ratelimit-limit-tokens"] = str(limits.tokens_per_minute)
        headers["x-ratelimit-remaining-tokens"] = str(quota.remaining_tokens)
    fields = limit_fields(client.rate_rule, limits)
    headers[POLICY] = fields.policy
    headers[STATE] = fields.state(quota)
    return headers


def quota_headers(error: GatewayError, client: Client | None) -> dict[str, str]:
    """A refusal's limit headers: the client's quota (when known), then the refusing rule's
    ``RateLimit-Policy``/``RateLimit`` fields over it."""
    headers = limit_headers(client, error.quota)
    if error.rule is not None:
        fields = limit_fields(client.rate_rule, client.limits) if client is not None else None
        headers.update(refusal_fields(error.rule, fields))
    return headers


def refusal_fields(rule: RuleInfo, limits: LimitFields | None) -> dict[str, str]:
    """The two fields of a refusal: the client's rate limits and the refusing rule; ``RateLimit``
    holds the refusing rule, with its reset."""
    policy = policy_item(rule)
    if limits is not None:
        own = rule.kind in ("requests", "tokens")  # the client's limits list it already
        policy = limits.policy if own else f"{policy}, {limits.policy}"
    return {POLICY: policy, STATE: state_item(rule)}
