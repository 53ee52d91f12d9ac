"""Configs for the tests: the app in-process against respx, and a gateway process in stub mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from src.config import GatewayConfig, parse_config
from tests.support import ROOT

UPSTREAM = "http://upstream.test/v1"
PROVIDER_KEY = "sk-Qz7f3a9c1e5b2d4086Xw"


def make_config(tmp_path: Path, **overrides: Any) -> GatewayConfig:
    """Provider ``primary`` (keyed) and ``secondary`` (keyless), both at the respx upstream."""
    data: dict[str, Any] = {
        "providers": {
            "primary": {
                "type": "openai",
                "base_url": UPSTREAM,
                "api_key_env": "TEST_PRIMARY_KEY",
                "timeout_s": 2,
            },
            "secondary": {"type": "openai", "base_url": "http://secondary.test/v1", "timeout_s": 2},
        },
        "aliases": {
            "default-chat": {
                "provider": "primary",
                "model": "up-model-a",
                "fallbacks": [{"provider": "secondary", "model": "up-model-b"}],
            },
            "solo": {"provider": "primary", "model": "up-model-a"},
        },
        "rate_limit": {"requests_per_minute": 1000},
        "log_file": str(tmp_path / "logs" / "gateway.log"),
    }
    data.update(overrides)
    return parse_config(data)


def stub_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """A config whose only provider is in stub mode (its key variable is never set)."""
    return {
        "providers": {
            "openai": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "GW_TEST_UNSET_KEY"}
        },
        "aliases": {"default-chat": {"provider": "openai", "model": "gpt-4o-mini"}},
        "rate_limit": {"requests_per_minute": 100_000},
        "log_file": str(tmp_path / "logs" / "gateway.log"),
        **overrides,
    }


def example_config() -> dict[str, Any]:
    """The repository's ``config/example.config.json``, the seed's config, as data."""
    data: dict[str, Any] = json.loads((ROOT / "config" / "example.config.json").read_text())
    return data


def log_lines(config: GatewayConfig) -> list[dict[str, Any]]:
    """The telemetry lines ``config``'s log file holds, parsed."""
    path = Path(config.log_file)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]
