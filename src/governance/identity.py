"""Who is calling: the client behind an API key, or the caller's own word in open mode.

With a ``clients`` section every request must carry ``Authorization: Bearer
<key>``; the gateway hashes the presented key with SHA-256 and looks the hash
up, so it never holds a key, and confirms the match with a constant-time
comparison. Everything a client may do (its limits, models, budget, token cap,
tags) is resolved here once per config load into a ``Client``, so the hot path
does one hash and one dictionary lookup.

Without ``clients`` the gateway runs open: callers name themselves
(``client_id`` in the body, ``X-Client-Id`` on the OpenAI routes) and all share
the global settings.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import BudgetConfig, GatewayConfig, RateLimitConfig
from ..errors import AuthenticationFailed, InvalidRequest, ModelNotAllowed
from ..state.limiter import Limits

OPEN_MODE_WARNING = (
    "gateway: warning: no 'clients' in the config: running open, without API keys;"
    " any caller may name any client_id and use every model"
)


@dataclass(frozen=True, slots=True)
class Client:
    """What one client may do. ``id`` is ``None`` in open mode, where the caller names itself."""

    id: str | None
    limits: Limits
    reserve_completion_tokens: int
    models: tuple[str, ...]
    allowed: frozenset[str] | None = None
    budget: BudgetConfig | None = None
    max_tokens: int | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    # Where the client's rules live in the config, for refusals and shadow reports.
    rate_rule: str = "rate_limit"
    rate_shadow: bool = False
    budget_shadow: bool = False
    queue_timeout_s: float | None = None
    priority: int = 0

    @property
    def scope(self) -> str:
        return f"client:{self.id}"

    def check_model(self, alias: str) -> None:
        """Raise ``ModelNotAllowed`` when the alias is outside the client's allow-list."""
        if self.allowed is not None and alias not in self.allowed:
            raise ModelNotAllowed(
                f"Client {self.id} may not use model {alias[:100]!r}."
                f" Allowed: {', '.join(self.models) or 'none'}.",
                param="model",
            )

    def cap_completion(
        self,
        body: dict[str, Any],
        asked: int | None,
        fields: tuple[str, ...] = ("max_completion_tokens", "max_tokens"),
        choices: int = 1,
    ) -> int | None:
        """Hold a request to the client's ``max_tokens``, the most completion tokens one request
        may produce across its ``choices``: refuse more (400), and when the request is silent ask
        for the cap shared among the choices (in the last of ``fields``, the body's names for it).
        Returns the per-choice completion budget the request now has.
        """
        cap = self.max_tokens
        if cap is None:
            return asked
        for name in fields:
            value = body.get(name)
            if type(value) is int and value * choices > cap:
                asked_for = f"{name} is {value}"
                if choices > 1:
                    asked_for = f"n * {name} is {choices} * {value} = {value * choices}"
                raise InvalidRequest(
                    f"{asked_for}; this client may ask for at most {cap} completion tokens"
                    " per request.",
                    param=name,
                )
        if asked is None:
            share = cap // choices
            if share < 1:
                raise InvalidRequest(
                    f"n is {choices}; this client may ask for at most {cap} completion tokens"
                    " per request, fewer than one per choice.",
                    param="n",
                )
            body[fields[-1]] = share
            return share
        return asked


def _limits(rate: RateLimitConfig) -> Limits:
    return Limits(rate.requests_per_minute, rate.tokens_per_minute, rate.algorithm)


class Identity:
    """The config's clients, indexed by key hash."""

    def __init__(self, config: GatewayConfig) -> None:
        aliases = tuple(config.aliases)
        self.open = config.clients is None
        limits = _limits(config.rate_limit)
        self.default = Client(
            None,
            limits,
            config.rate_limit.reserve_completion_tokens,
            aliases,
            rate_shadow=config.rate_limit.mode == "shadow",
        )
        self._by_hash: dict[str, tuple[str, Client]] = {}
        self.by_id: dict[str, Client] = {}
        for client_id, spec in (config.clients or {}).items():
            rate = spec.rate_limit or config.rate_limit
            rule = f"clients.{client_id}.rate_limit" if spec.rate_limit else "rate_limit"
            allowed = None if spec.allowed_models is None else frozenset(spec.allowed_models)
            queue_ms = spec.queue_timeout_ms
            client = Client(
                client_id,
                _limits(rate),
                rate.reserve_completion_tokens,
                aliases if allowed is None else tuple(a for a in aliases if a in allowed),
                allowed,
                spec.budget,
                spec.max_tokens,
                dict(spec.tags),
                rule,
                rate.mode == "shadow",
                spec.budget is not None and spec.budget.mode == "shadow",
                queue_ms / 1000 if queue_ms is not None else None,
                spec.priority,
            )
            self.by_id[client_id] = client
            for digest in spec.key_hashes():
                self._by_hash[digest] = (digest, client)

    def authenticate(self, authorization: str | None, api_key: str | None = None) -> Client:
        """The client whose key is in ``Authorization: Bearer``, or else in ``x-api-key`` (the
        header Anthropic's SDK sends); ``AuthenticationFailed`` when there is none that fits.
        """
        if authorization:
            scheme, _, key = authorization.partition(" ")
            key = key.strip()
            if scheme.lower() != "bearer" or not key:
                raise AuthenticationFailed(
                    "Malformed Authorization header: expected 'Bearer <key>'."
                )
        elif api_key:
            key = api_key.strip()
        else:
            raise AuthenticationFailed("Missing API key: send it as 'Authorization: Bearer <key>'.")
        digest = hashlib.sha256(key.encode()).hexdigest()
        found = self._by_hash.get(digest)
        if found is None or not hmac.compare_digest(found[0], digest):
            raise AuthenticationFailed("Invalid API key.")
        return found[1]
