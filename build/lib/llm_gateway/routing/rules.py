"""Rule-based routing: the config's ``routes``, first match wins.

A rule matches when every condition it gives holds: the ``X-Use-Case`` header
is one of ``use_case``; the client id matches one of ``client`` (shell-style
patterns); the model the client asked for matches one of ``model`` (patterns,
so ``claude-*`` names a model family); the approximate prompt is within
``min_prompt_tokens``/``max_prompt_tokens``. Patterns are compiled at start-up.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from ..config import RouteRule


def _patterns(globs: list[str] | None) -> re.Pattern[str] | None:
    if globs is None:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(glob)})" for glob in globs))


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    alias: str
    use_cases: frozenset[str] | None
    clients: re.Pattern[str] | None
    models: re.Pattern[str] | None
    min_prompt: int | None
    max_prompt: int | None

    @classmethod
    def compile(cls, rule: RouteRule) -> Rule:
        match = rule.match
        return cls(
            rule.name,
            rule.alias,
            frozenset(match.use_case) if match.use_case is not None else None,
            _patterns(match.client),
            _patterns(match.model),
            match.min_prompt_tokens,
            match.max_prompt_tokens,
        )

    def matches(self, model: str, client: str, use_case: str | None, prompt: int) -> bool:
        return (
            (self.use_cases is None or use_case in self.use_cases)
            and (self.clients is None or self.clients.match(client) is not None)
            and (self.models is None or self.models.match(model) is not None)
            and (self.min_prompt is None or prompt >= self.min_prompt)
            and (self.max_prompt is None or prompt <= self.max_prompt)
        )


class Rules:
    def __init__(self, routes: list[RouteRule]) -> None:
        self._rules = tuple(Rule.compile(rule) for rule in routes)

    def __bool__(self) -> bool:
        return bool(self._rules)

    def report(
        self, model: str, client: str, use_case: str | None, prompt: int
    ) -> list[dict[str, object]]:
        """Every rule, and whether it matches a request (for explain)."""
        return [
            {"name": rule.name, "alias": rule.alias, "matches": matched}
            for rule in self._rules
            for matched in (rule.matches(model, client, use_case, prompt),)
        ]

    def first(self, model: str, client: str, use_case: str | None, prompt: int) -> Rule | None:
        for rule in self._rules:
            if rule.matches(model, client, use_case, prompt):
                return rule
        return None
