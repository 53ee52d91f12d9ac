"""The hostile suite's parts: canary keys, the shared gateway's config, and its exposure.

``hostile_gateway`` is the gateway process (``tests/support/gateway.py``) with
a config whose providers all point at the one fake upstream and whose keys are
canaries. ``Exposure`` collects everything the gateway said to anyone
(answers, headers, log lines, stdout, stderr); what each test added is scanned
for the canaries when the test ends (``conftest.py``), whatever the order.

``SCALE`` (environment ``HOSTILE_SCALE``, default 1) multiplies the case counts:
the default run is sized for CI; ``HOSTILE_SCALE=10`` gives the figures in docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.gateway import GatewayProcess

SCALE = max(1, int(os.environ.get("HOSTILE_SCALE", "1")))

# Canaries: random per run, URL-safe letters so no 8-character piece looks like a request id.
PROVIDER_KEY = "sk-canary-" + secrets.token_urlsafe(24)
AZURE_KEY = "az-canary-" + secrets.token_urlsafe(24)
ANTHROPIC_KEY = "sk-ant-canary-" + secrets.token_urlsafe(24)
CLIENT_KEY = "gw-client-canary-" + secrets.token_urlsafe(24)
ADMIN_KEY = "gw-admin-canary-" + secrets.token_urlsafe(24)
CANARIES = (PROVIDER_KEY, AZURE_KEY, ANTHROPIC_KEY, CLIENT_KEY, ADMIN_KEY)
CANARY_ENV = {
    "HOSTILE_KEY": PROVIDER_KEY,
    "HOSTILE_AZURE_KEY": AZURE_KEY,
    "HOSTILE_ANTHROPIC_KEY": ANTHROPIC_KEY,
    "GATEWAY_ADMIN_KEY": ADMIN_KEY,
}
_PIECE = 8
_REQUEST_ID = re.compile(r"gw-[0-9a-f]{12}")


def scaled(count: int) -> int:
    return count * SCALE


def keyed(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with one client, ``alice``, whose key is the client canary."""
    digest = hashlib.sha256(CLIENT_KEY.encode()).hexdigest()
    return {**config, "clients": {"alice": {"key_sha256": digest}}}


def gateway_config(upstream_base: str, log_file: Path, **overrides: Any) -> dict[str, Any]:
    origin = upstream_base.removesuffix("/v1")
    config: dict[str, Any] = {
        "providers": {
            "up": {
                "type": "openai",
                "base_url": upstream_base,
                "api_key_env": "HOSTILE_KEY",
                "timeout_s": 2,
            },
            "az": {
                "type": "azure",
                "base_url": origin,
                "api_key_env": "HOSTILE_AZURE_KEY",
                "api_version": "2024-10-21",
                "timeout_s": 2,
            },
            "anth": {
                "type": "anthropic",
                "base_url": upstream_base,
                "api_key_env": "HOSTILE_ANTHROPIC_KEY",
                "timeout_s": 2,
            },
        },
        "aliases": {
            "chat": {"provider": "up", "model": "m1"},
            "az": {"provider": "az", "model": "dep1"},
            "anth": {"provider": "anth", "model": "claude-x"},
        },
        "rate_limit": {"requests_per_minute": 10_000_000},
        "retry": {"max_attempts": 3, "base_backoff_s": 0.05, "max_backoff_s": 0.2},
        "breaker": {"failure_threshold": 1_000_000, "cooldown_s": 1},
        "deadline_s": 4,
        "retry_after_cap_s": 1.5,
        "request_read_timeout_s": 2,
        "shutdown_drain_s": 1,
        "log_file": str(log_file),
        "ledger_file": str(log_file.parent / "spend.ledger"),
    }
    config.update(overrides)
    return config


def hostile_gateway(home: Path, config: dict[str, Any]) -> GatewayProcess:
    """A gateway process (not started yet) whose provider and admin keys are the canaries."""
    return GatewayProcess(config, home, env=dict(CANARY_ENV))


@dataclass
class Exposure:
    """Everything the gateway showed anyone during the suite, for the secrets scan.

    ``unscanned`` hands out what was added since its last call, so each test's
    share is scanned once; a file's last line is held back until it is whole.
    """

    texts: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    _texts_seen: int = 0
    _offsets: dict[Path, int] = field(default_factory=dict)

    def answer(self, response: httpx.Response) -> None:
        self.texts.append(response.text)
        self.texts.append(json.dumps(dict(response.headers)))

    def text(self, value: str) -> None:
        self.texts.append(value)

    def everything(self) -> Iterable[str]:
        yield from self.texts
        for path in self.files:
            if path.exists():
                yield path.read_bytes().decode("utf-8", "replace")

    def unscanned(self, *, final: bool = False) -> list[str]:
        """The texts and file bytes added since the last call (``final``: partial lines too)."""
        found = self.texts[self._texts_seen :]
        self._texts_seen = len(self.texts)
        for path in self.files:
            if not path.exists():
                continue
            data = path.read_bytes()[self._offsets.get(path, 0) :]
            cut = len(data) if final else data.rfind(b"\n") + 1
            if cut:
                found.append(data[:cut].decode("utf-8", "replace"))
                self._offsets[path] = self._offsets.get(path, 0) + cut
        return found


def secret_forms(secret: str) -> list[str]:
    """The secret, every 8-character piece of it, and its SHA-256 (hex) and pieces of that."""
    digest = hashlib.sha256(secret.encode()).hexdigest()
    pieces = [secret[i : i + _PIECE] for i in range(len(secret) - _PIECE + 1)]
    hashed = [digest[i : i + _PIECE] for i in range(len(digest) - _PIECE + 1)]
    return [secret, digest, *pieces, *hashed]


def leaks(texts: Iterable[str], secrets_: Iterable[str]) -> list[tuple[str, str]]:
    """(form, context) for every form of a secret found in ``texts``."""
    forms = {form for secret in secrets_ for form in secret_forms(secret)}
    # Request ids are random hex, so a piece of a hex digest could show up in one by chance.
    found = []
    for text in texts:
        cleaned = _REQUEST_ID.sub("gw-", text)
        for form in forms:
            at = cleaned.find(form)
            if at >= 0:
                found.append((form, cleaned[max(0, at - 60) : at + 60]))
    return found


def is_envelope(status: int, body: bytes, path: str) -> bool:
    """The gateway's error envelope in the dialect of ``path``."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    if path.startswith("/v1/messages"):
        return (
            isinstance(data, dict)
            and data.get("type") == "error"
            and isinstance(data.get("error"), dict)
            and isinstance(data["error"].get("message"), str)
        )
    error = data.get("error") if isinstance(data, dict) else None
    return (
        isinstance(error, dict)
        and isinstance(error.get("type"), str)
        and isinstance(error.get("message"), str)
    )
