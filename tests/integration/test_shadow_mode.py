"""Shadow mode, end to end through uvicorn: shadow rules refuse nothing, the log and metrics say
what they would have done."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.configs import stub_config
from tests.support.gateway import running_gateway

pytestmark = pytest.mark.slow

KEY = "sk-client-shadow-1"


def _lines(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(str(config["log_file"])).read_text().splitlines()]


def test_shadow_rules_never_refuse_and_say_what_they_would_have_done(tmp_path: Path) -> None:
    config = stub_config(
        tmp_path,
        pricing={"openai": {"gpt-4o-mini": {"input_usd_per_mtok": 1e6, "output_usd_per_mtok": 0}}},
        clients={
            "acme": {
                "key_sha256": hashlib.sha256(KEY.encode()).hexdigest(),
                "rate_limit": {"requests_per_minute": 2, "mode": "shadow"},
                "budget": {"usd_per_day": 1, "mode": "shadow"},
            }
        },
        policies=[
            {"name": "no-secrets", "action": "block_pattern", "patterns": ["secret"],
             "mode": "shadow"},
            {"name": "freeze", "action": "deny", "match": {"client": "acme"}, "mode": "shadow"},
        ],
    )  # fmt: skip
    body = {"model": "default-chat", "messages": [{"role": "user", "content": "a secret"}]}
    with running_gateway(config, tmp_path) as gateway:
        base = gateway.base_url
        answers = [
            httpx.post(base + "/v1/chat/completions", json=body,
                       headers={"authorization": f"Bearer {KEY}"}, timeout=10)
            for _ in range(4)
        ]  # fmt: skip
        metrics = httpx.get(base + "/metrics", timeout=10).text
    assert [a.status_code for a in answers] == [200, 200, 200, 200]
    lines = _lines(config)
    assert len(lines) == 4
    would = [sorted((n["rule"], n["would"]) for n in line["shadow"]) for line in lines]
    policy_notes = [
        ("policies.freeze", "policy_denied"),
        ("policies.no-secrets", "content_blocked"),
    ]
    # every request: both policies; the budget is spent by the first (a $1e6/Mtok price);
    # the rate limit of 2 would refuse the third and the fourth
    assert would[0] == policy_notes
    assert ("clients.acme.budget.usd_per_day", "budget_exceeded") in would[1]
    for index in (2, 3):
        assert ("clients.acme.rate_limit.requests_per_minute", "rate_limit_exceeded") in would[
            index
        ]
    assert all(line["status"] == 200 for line in lines)
    assert (
        'gateway_shadow_decisions_total{rule="policies.freeze",would="policy_denied"} 4.0'
        in metrics
    )
    assert (
        'gateway_shadow_decisions_total{rule="clients.acme.rate_limit.requests_per_minute",'
        'would="rate_limit_exceeded"} 2.0' in metrics
    )


def test_an_enforced_rule_refuses_where_its_shadow_only_reported(tmp_path: Path) -> None:
    config = stub_config(
        tmp_path,
        policies=[{"name": "no-secrets", "action": "block_pattern", "patterns": ["secret"]}],
    )
    body = {"model": "default-chat", "messages": [{"role": "user", "content": "a secret"}]}
    with running_gateway(config, tmp_path) as gateway:
        base = gateway.base_url
        answer = httpx.post(base + "/v1/chat/completions", json=body, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "content_blocked"
    assert answer.json()["error"]["rule"]["name"] == "policies.no-secrets"
    assert "shadow" not in _lines(config)[0]
