"""Policy rules alone: a bad policy is refused with the reason; presets catch what they name."""

from __future__ import annotations

import pytest

from src.config import ConfigError
from src.governance.redaction import PRESETS, compile_patterns
from tests.support.configs import make_config


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        ({"name": "r", "action": "redact"}, "needs presets or patterns"),
        ({"name": "r", "action": "redact", "presets": ["emails"]}, "unknown preset"),
        ({"name": "r", "action": "block_pattern", "patterns": ["("]}, "regular expression"),
        ({"name": "r", "action": "explode"}, "action"),
        ({"name": "r", "action": "deny", "match": {"client_id": "x"}}, "client_id"),
    ],
)
def test_bad_policies_are_refused_with_the_reason(tmp_path, policy, reason):
    with pytest.raises(ConfigError, match=reason):
        make_config(tmp_path, policies=[policy])


@pytest.mark.parametrize(
    ("preset", "hit", "miss"),
    [
        ("email", "write to a.b+c@mail.example.co.uk", "a @ b"),
        ("card_number", "4111-1111-1111-1111", "call 555 1234"),
        ("us_ssn", "ssn 078-05-1120", "078-051-120"),
        ("iban", "GB82 WEST 1234 5698 7654 32", "GB82"),
        ("secret", "AKIAIOSFODNN7EXAMPLE", "akia"),
    ],
)
def test_presets_catch_what_they_name(preset, hit, miss):
    pattern = compile_patterns([preset], [])
    assert pattern.search(hit) and not pattern.search(miss)
    assert preset in PRESETS
