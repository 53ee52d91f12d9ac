"""What changed between two configs, in plain words.

Named sections (``providers``, ``aliases``, ``clients``, ``pricing``) and
named lists (``routes``, ``policies``, by ``name``) report entries added and
removed; every other difference is a setting that changed, with its old and
new value (``clients.acme.rate_limit.requests_per_minute changed: 20 -> 10``).
Key hashes are never printed, only that they changed. Defaults count: a
setting given with its default value is no change.
"""

from __future__ import annotations

from typing import Any

from . import GatewayConfig

_SINGULAR = {
    "providers": "provider",
    "aliases": "alias",
    "clients": "client",
    "pricing": "pricing for provider",
    "routes": "route",
    "policies": "policy",
}
_SECRET_KEYS = {"key_sha256"}


def diff(old: GatewayConfig, new: GatewayConfig) -> list[str]:
    """The differences from ``old`` to ``new``, one sentence each, in config order."""
    before, after = old.model_dump(mode="json"), new.model_dump(mode="json")
    lines: list[str] = []
    for key in dict.fromkeys([*before, *after]):
        a, b = before.get(key), after.get(key)
        if a == b:
            continue
        if key in ("routes", "policies"):
            a, b = _by_name(a), _by_name(b)
        if key in _SINGULAR and isinstance(a, dict | None) and isinstance(b, dict | None):
            lines += _named(key, a or {}, b or {})
        else:
            lines += _changes(key, a, b)
    return lines


def _by_name(items: Any) -> dict[str, Any]:
    return {item["name"]: item for item in items or ()}


def _named(section: str, a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    noun = _SINGULAR[section]
    lines = [f"{noun} added: {name}" for name in b if name not in a]
    lines += [f"{noun} removed: {name}" for name in a if name not in b]
    for name in a:
        if name in b and a[name] != b[name]:
            lines += _changes(f"{section}.{name}", a[name], b[name])
    return lines


def _changes(path: str, a: Any, b: Any) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        lines = []
        for key in dict.fromkeys([*a, *b]):
            if a.get(key) != b.get(key):
                lines += _changes(f"{path}.{key}", a.get(key), b.get(key))
        return lines
    if path.rsplit(".", 1)[-1] in _SECRET_KEYS:
        return [f"{path}: key hash changed"]
    if a is None:
        return [f"{path} set: {_show(b)}"]
    if b is None:
        return [f"{path} unset (was {_show(a)})"]
    return [f"{path} changed: {_show(a)} -> {_show(b)}"]


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    return str(value)
