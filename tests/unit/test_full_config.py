"""The full example config loads and turns on every feature."""

from __future__ import annotations

from src.config import load_config
from tests.support import ROOT

FULL = ROOT / "config" / "full.config.json"


def test_full_config_loads_and_uses_every_feature():
    config = load_config(FULL)
    assert {p.type for p in config.providers.values()} == {"openai", "anthropic", "azure"}
    aliases = config.aliases
    assert any(t.weight != 1 for t in aliases["default-chat"].targets or ())
    assert aliases["default-chat"].fallbacks and aliases["default-chat"].retry is not None
    assert aliases["default-chat"].deadline_s is not None
    assert aliases["cheap-chat"].strategy == "cheapest"
    assert aliases["claude"].provider == "anthropic"
    match_keys = {key for rule in config.routes for key, value in rule.match if value is not None}
    assert match_keys == {"use_case", "client", "model", "min_prompt_tokens"}
    assert config.deadline_s and config.retry.max_attempts > 1 and config.breaker.failure_threshold
    priced = {(p, m) for p, models in config.pricing.items() for m in models}
    for alias in aliases.values():
        for _, target in alias.all_targets():
            assert (target.provider, target.model) in priced
