"""What a config that fits the schema can still get wrong: checks across its sections.

``check`` returns findings, each with the config path it is about:

errors (the gateway refuses to start or reload on them)
  - a policy that can never match: it names an alias, provider or (with
    ``clients``) a client the config does not define, or tags no client has;
  - a routing rule that can never match: ``min_prompt_tokens`` above
    ``max_prompt_tokens``, client patterns that match no configured client,
    or a rule after one that matches every request;

warnings (reported by ``configtool validate``; the gateway starts)
  - an environment variable the config names that is not set (a provider
    then answers in stub mode; an explicitly named admin key variable leaves
    the admin API disabled);
  - a fallback chain that leaves a client's allow-list: an alias the client
    may use falls back to the model behind an alias it may not use;
  - a routing rule that sends a client's requests to an alias outside its
    allow-list (they will be refused).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from typing import Literal

from . import ConfigError, GatewayConfig, PolicyConfig

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    path: tuple[str | int, ...]
    message: str

    @property
    def where(self) -> str:
        return ".".join(str(part) for part in self.path)


def check(config: GatewayConfig) -> list[Finding]:
    findings = [*_policies(config), *_routes(config), *_environment(config)]
    findings += _allow_lists(config)
    return findings


def errors(config: GatewayConfig) -> list[Finding]:
    return [f for f in check(config) if f.severity == "error"]


def refuse_errors(config: GatewayConfig, source: str) -> None:
    """Raise ``ConfigError`` naming every error ``check`` finds (warnings pass)."""
    found = errors(config)
    if found:
        problems = "; ".join(f"{f.where}: {f.message}" for f in found)
        raise ConfigError(f"config {source}: {problems} (llm-gateway config validate {source})")


def _names(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _policies(config: GatewayConfig) -> list[Finding]:
    found = []
    for index, policy in enumerate(config.policies):
        reason = _never_matches(config, policy)
        if reason is not None:
            found.append(
                Finding("error", ("policies", index, "match"), f"can never match: {reason}")
            )
    return found


def _never_matches(config: GatewayConfig, policy: PolicyConfig) -> str | None:
    match = policy.match
    aliases = _names(match.alias)
    if aliases and not any(a in config.aliases for a in aliases):
        return f"no alias {', '.join(map(repr, aliases))} in aliases"
    providers = _names(match.provider)
    if providers and not any(p in config.providers for p in providers):
        return f"no provider {', '.join(map(repr, providers))} in providers"
    clients = config.clients
    if clients is None:
        if match.tags:
            return "it needs client tags, and without clients callers have none"
        return None
    named = _names(match.client)
    if named and not any(c in clients for c in named):
        return f"no client {', '.join(map(repr, named))} in clients"
    candidates = [clients[c] for c in named if c in clients] if named else list(clients.values())
    if match.tags and not any(
        all(client.tags.get(k) == v for k, v in match.tags.items()) for client in candidates
    ):
        return "no client it names has all of its tags"
    return None


def _routes(config: GatewayConfig) -> list[Finding]:
    found = []
    catch_all: str | None = None
    for index, rule in enumerate(config.routes):
        match = rule.match
        path = ("routes", index, "match")
        if catch_all is not None:
            found.append(
                Finding(
                    "error",
                    path,
                    f"can never match: rule {catch_all!r} before it matches every request",
                )
            )
            continue
        low, high = match.min_prompt_tokens, match.max_prompt_tokens
        if low is not None and high is not None and low > high:
            found.append(
                Finding(
                    "error",
                    path,
                    f"can never match: min_prompt_tokens {low} is above max_prompt_tokens {high}",
                )
            )
        elif (
            config.clients is not None
            and match.client is not None
            and not any(
                fnmatch.fnmatchcase(client, pattern)
                for client in config.clients
                for pattern in match.client
            )
        ):
            found.append(
                Finding(
                    "error",
                    path,
                    "can never match: no configured client matches"
                    f" {', '.join(map(repr, match.client))}",
                )
            )
        if match == type(match)():
            catch_all = rule.name
    return found


def _environment(config: GatewayConfig) -> list[Finding]:
    found = []
    for name, provider in config.providers.items():
        variable = provider.api_key_env
        if variable is not None and not os.environ.get(variable):
            found.append(
                Finding(
                    "warning",
                    ("providers", name, "api_key_env"),
                    f"environment variable"
                    f" {variable} is not set: provider {name!r} answers in stub mode",
                )
            )
    if "admin_key_env" in config.model_fields_set and not os.environ.get(config.admin_key_env):
        found.append(
            Finding(
                "warning",
                ("admin_key_env",),
                f"environment variable {config.admin_key_env}"
                " is not set: the admin API is disabled",
            )
        )
    return found


def _allow_lists(config: GatewayConfig) -> list[Finding]:
    found: list[Finding] = []
    behind = {
        (t.provider, t.model): alias
        for alias, spec in config.aliases.items()
        for t in spec.primary()
    }
    for client_id, client in (config.clients or {}).items():
        if client.allowed_models is None:
            continue
        allowed = set(client.allowed_models)
        path = ("clients", client_id, "allowed_models")
        for alias in client.allowed_models:
            for target in config.aliases[alias].fallbacks:
                other = behind.get((target.provider, target.model))
                if other is not None and other not in allowed:
                    found.append(
                        Finding(
                            "warning",
                            path,
                            f"alias {alias!r} falls back to"
                            f" {target.provider}/{target.model}, the model of alias"
                            f" {other!r} that {client_id!r} may not use",
                        )
                    )
        for index, rule in enumerate(config.routes):
            patterns = rule.match.client
            applies = patterns is None or any(fnmatch.fnmatchcase(client_id, p) for p in patterns)
            if applies and rule.alias not in allowed:
                found.append(
                    Finding(
                        "warning",
                        ("routes", index, "alias"),
                        f"sends requests of client"
                        f" {client_id!r} to alias {rule.alias!r}, outside its allow-list"
                        " (they will be refused)",
                    )
                )
    return found
