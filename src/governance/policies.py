"""Policy hooks: the config's ordered rules, applied before the upstream call and after the answer.

Each rule has a ``name``, a ``match`` (client, alias, provider, tags, use case;
every field given must match, none given matches every call) and an action:

- ``deny``: 403 ``policy_denied`` naming the rule;
- ``block_pattern``: 400 ``content_blocked`` when a message text matches;
- ``redact``: matches in the message texts are replaced before the prompt
  leaves the gateway;
- ``log_payload``: the forwarded request and the answer go into the call's log
  line, credentials masked;
- ``hook``: a Python function named ``module:function``, called with a
  ``HookEvent`` in both phases (the interface is in SPEC.md).

Rules run in config order. The rules that match a call are chosen once, before
the upstream call; the same rules see the answer. A call with no rules costs
one truth test.

A rule with ``"mode": "shadow"`` changes and refuses nothing: ``before`` and
``after`` return notes of what it would have done (deny, block, redact, log
the payload, a hook's refusal or failure); a shadow hook sees copies.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from ..config import ConfigError, GatewayConfig, PolicyConfig
from ..errors import ContentBlocked, GatewayError, PolicyDenied, PolicyFailed, RuleInfo
from .redaction import compile_patterns, map_prompt_text, prompt_texts

Phase = Literal["request", "response"]


@dataclass(slots=True)
class HookEvent:
    """What a Python hook sees. SPEC.md states the contract (Governance, Policies).

    In the ``request`` phase ``body`` is the body about to be sent upstream and
    may be changed in place. In the ``response`` phase ``answer`` is the
    non-streamed answer (changeable in place), or ``None`` for a stream, whose
    text is in ``text``. ``providers`` are the alias's target providers before
    the call, and the provider that answered after it.
    """

    phase: Phase
    policy: str
    client_id: str
    alias: str
    providers: tuple[str, ...]
    tags: Mapping[str, str]
    use_case: str | None
    body: dict[str, Any]
    answer: dict[str, Any] | None = None
    text: str | None = None


Hook = Callable[[HookEvent], Any]


@dataclass(frozen=True, slots=True)
class CallAttributes:
    """The attributes a rule's ``match`` is tested against."""

    client_id: str
    alias: str
    providers: tuple[str, ...]
    tags: Mapping[str, str]
    use_case: str | None


def _names(value: str | list[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset([value] if isinstance(value, str) else value)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    action: str
    clients: frozenset[str] | None = None
    aliases: frozenset[str] | None = None
    providers: frozenset[str] | None = None
    tags: tuple[tuple[str, str], ...] = ()
    use_cases: frozenset[str] | None = None
    pattern: Any = None
    replacement: str = ""
    hook: Hook | None = field(default=None, compare=False)
    shadow: bool = False
    scope: str = "all requests"

    @property
    def info(self) -> RuleInfo:
        return RuleInfo(f"policies.{self.name}", "policy", self.scope, 0, 0, "requests", None)

    def matches(self, call: CallAttributes) -> bool:
        return (
            (self.clients is None or call.client_id in self.clients)
            and (self.aliases is None or call.alias in self.aliases)
            and (self.providers is None or not self.providers.isdisjoint(call.providers))
            and all(call.tags.get(key) == value for key, value in self.tags)
            and (self.use_cases is None or call.use_case in self.use_cases)
        )


def _compile(index: int, spec: PolicyConfig, source: str) -> Rule:
    match = spec.match
    pattern = None
    if spec.action in ("redact", "block_pattern"):
        pattern = compile_patterns(spec.presets, spec.patterns)
    hook = _import_hook(index, spec.hook, source) if spec.hook else None
    return Rule(
        spec.name,
        spec.action,
        _names(match.client),
        _names(match.alias),
        _names(match.provider),
        tuple(match.tags.items()),
        _names(match.use_case),
        pattern,
        spec.replacement,
        hook,
        spec.mode == "shadow",
        _scope(spec),
    )


def _scope(spec: PolicyConfig) -> str:
    """The calls a rule applies to, in words: ``client=a,b; alias=x`` or ``all requests``."""
    parts = []
    for key in ("client", "alias", "provider", "use_case"):
        value = getattr(spec.match, key)
        if value is not None:
            parts.append(f"{key}={value if isinstance(value, str) else ','.join(value)}")
    parts.extend(f"tags.{key}={value}" for key, value in spec.match.tags.items())
    return "; ".join(parts) or "all requests"


def _import_hook(index: int, name: str, source: str) -> Hook:
    module_name, _, attribute = name.partition(":")
    where = f"config {source}: policies.{index}.hook"
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"{where}: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ConfigError(f"{where}: {module_name!r} has no function {attribute!r}")
    return function  # type: ignore[no-any-return]


class Policies:
    """The compiled rules of one config; ``ConfigError`` when a hook cannot be loaded."""

    def __init__(self, config: GatewayConfig, source: str = "<config>") -> None:
        self.rules = tuple(_compile(i, spec, source) for i, spec in enumerate(config.policies))
        self._providers = {
            alias: tuple(dict.fromkeys(t.provider for _, t in spec.all_targets()))
            for alias, spec in config.aliases.items()
        }

    def select(
        self, client_id: str, alias: str, tags: Mapping[str, str], use_case: str | None
    ) -> tuple[CallAttributes, tuple[Rule, ...]]:
        """The call as the rules see it, and the rules that match it, in order."""
        call = CallAttributes(client_id, alias, self._providers.get(alias, ()), tags, use_case)
        return call, tuple(rule for rule in self.rules if rule.matches(call))

    async def before(
        self, call: CallAttributes, rules: tuple[Rule, ...], body: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """The request phase: refuse, or change ``body`` (the body about to go upstream).

        Returns the notes of the shadow rules that would have acted (usually none).
        """
        notes: list[dict[str, Any]] = []
        for rule in rules:
            if not rule.shadow:
                await _before(rule, call, body)
                continue
            # a shadow hook may change what it is given: give it a copy
            try:
                would = await _before(rule, call, copy.deepcopy(body) if rule.hook else body)
            except GatewayError as exc:
                notes.append(_note(rule, exc.type, exc.status, exc.message))
            else:
                if would is not None:
                    notes.append(_note(rule, would, None, f"policy {rule.name!r} would {would}"))
        return notes

    async def after(
        self,
        call: CallAttributes,
        rules: tuple[Rule, ...],
        provider: str | None,
        body: dict[str, Any],
        answer: dict[str, Any] | None,
        text: str | None = None,
    ) -> list[dict[str, Any]]:
        """The response phase: hooks see (and may change or refuse) the answer.

        Returns the notes of shadow hooks that would have refused it.
        """
        answered = (provider,) if provider else ()
        notes: list[dict[str, Any]] = []
        for rule in rules:
            if rule.hook is None:
                continue
            shadow = rule.shadow
            event = HookEvent(
                "response", rule.name, call.client_id, call.alias, answered, call.tags,
                call.use_case, copy.deepcopy(body) if shadow else body,
                copy.deepcopy(answer) if shadow else answer, text,
            )  # fmt: skip
            try:
                await _run(rule, event)
            except GatewayError as exc:
                if not shadow:
                    raise
                notes.append(_note(rule, exc.type, exc.status, exc.message))
        return notes


async def _before(rule: Rule, call: CallAttributes, body: dict[str, Any]) -> str | None:
    """One rule's request phase; what it did when that is not a refusal (``redact``...)."""
    if rule.action == "deny":
        raise _refused(PolicyDenied(f"Request denied by policy {rule.name!r}."), rule)
    if rule.action == "block_pattern":
        if any(rule.pattern.search(text) for text in prompt_texts(body)):
            raise _refused(
                ContentBlocked(
                    f"The request contains content blocked by policy {rule.name!r}.",
                    param="messages",
                ),
                rule,
            )
    elif rule.action == "redact":
        if not rule.shadow:
            map_prompt_text(body, partial(rule.pattern.sub, rule.replacement))
        elif any(rule.pattern.search(text) for text in prompt_texts(body)):
            return "redact"
    elif rule.action == "log_payload":
        return "log_payload"
    elif rule.hook is not None:
        await _run(rule, HookEvent("request", rule.name, *_attrs(call), body))
    return None


def _refused(error: GatewayError, rule: Rule) -> GatewayError:
    error.rule = rule.info
    return error


def _note(rule: Rule, would: str, status: int | None, message: str) -> dict[str, Any]:
    return {
        "rule": f"policies.{rule.name}",
        "kind": "policy",
        "would": would,
        "status": status,
        "message": message,
    }


def _attrs(call: CallAttributes) -> tuple[str, str, tuple[str, ...], Mapping[str, str], str | None]:
    return call.client_id, call.alias, call.providers, call.tags, call.use_case


async def _run(rule: Rule, event: HookEvent) -> None:
    """Call a hook; a returned string refuses the call, an exception fails it closed."""
    assert rule.hook is not None
    try:
        verdict = rule.hook(event)
        if inspect.isawaitable(verdict):
            verdict = await verdict
    except Exception as exc:
        logging.getLogger("gateway").error(
            "policy %r hook failed in the %s phase: %s", rule.name, event.phase, type(exc).__name__
        )
        raise _refused(
            PolicyFailed(
                f"Policy {rule.name!r} failed ({type(exc).__name__}); the call was stopped."
            ),
            rule,
        ) from None
    if isinstance(verdict, str) and verdict:
        raise _refused(
            PolicyDenied(f"Request denied by policy {rule.name!r}: {verdict[:500]}"), rule
        )


def wants_payload(rules: tuple[Rule, ...]) -> bool:
    return any(rule.action == "log_payload" and not rule.shadow for rule in rules)
