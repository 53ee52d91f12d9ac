"""``POST /v1/explain`` and the ``X-Max-Cost-USD`` ceiling, end to end through uvicorn."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.configs import stub_config
from tests.support.gateway import running_gateway

pytestmark = pytest.mark.slow

ACME, BETA, ADMIN = "sk-acme-explain-1", "sk-beta-explain-1", "admin-explain-key"
# The ceiling tests spend as a client of their own, so acme's counts are whole for the explain
# test whatever the order.
SPENDER = "sk-spender-explain-1"
PRICES = {
    "big": {"input_usd_per_mtok": 10.0, "output_usd_per_mtok": 30.0},
    "small": {"input_usd_per_mtok": 0.1, "output_usd_per_mtok": 0.4},
}
# "hello there" is 2 words + 1 for the role: 3 prompt tokens; max_tokens 1000
BIG = (3 * 10.0 + 1000 * 30.0) / 1e6
SMALL = (3 * 0.1 + 1000 * 0.4) / 1e6
BODY = {
    "model": "mix",
    "messages": [{"role": "user", "content": "hello there"}],
    "max_tokens": 1000,
}


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    home = tmp_path_factory.mktemp("explain")
    config = stub_config(
        home,
        aliases={
            "mix": {"targets": [{"provider": "openai", "model": "big"},
                                {"provider": "openai", "model": "small"}]},
            "default-chat": {"provider": "openai", "model": "small"},
        },
        pricing={"openai": PRICES},
        clients={
            "acme": {"key_sha256": _hash(ACME), "budget": {"usd_per_day": 5},
                     "rate_limit": {"requests_per_minute": 50, "tokens_per_minute": 100000}},
            "beta": {"key_sha256": _hash(BETA), "tags": {"team": "b"}},
            "spender": {"key_sha256": _hash(SPENDER)},
        },
        policies=[
            {"name": "log-acme", "action": "log_payload", "match": {"client": "acme"}},
            {"name": "no-beta-mix", "action": "deny", "match": {"client": "beta", "alias": "mix"}},
        ],
        admin_key_env="GW_TEST_EXPLAIN_ADMIN",
    )  # fmt: skip
    with running_gateway(config, home, env={"GW_TEST_EXPLAIN_ADMIN": ADMIN}) as gateway:
        yield gateway.base_url, config


def _post(base: str, path: str, key: str, body: Any = BODY, **headers: str) -> httpx.Response:
    return httpx.post(
        base + path, json=body, headers={"authorization": f"Bearer {key}", **headers}, timeout=10
    )


def _log(config: dict[str, Any]) -> list[dict[str, Any]]:
    path = Path(config["log_file"])
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _line(config: dict[str, Any], request_id: str) -> dict[str, Any]:
    """The request's telemetry line (written from a background thread: wait for it)."""
    deadline = time.monotonic() + 5
    while True:
        found = [x for x in _log(config) if x["request_id"] == request_id]
        if found or time.monotonic() > deadline:
            return found[0]
        time.sleep(0.02)


def test_explain_answers_the_pipeline_decisions_without_counting(gateway: Any) -> None:
    base, config = gateway
    before = len(_log(config))
    for _ in range(3):
        answer = _post(base, "/v1/explain", ACME)
    assert answer.status_code == 200
    report = answer.json()
    assert report["client"]["id"] == "acme" and report["viewer"] == "client"
    assert report["route"] == {"rule": None, "alias": "mix", "strategy": "weighted"}
    assert {(t["model"], t["circuit"], t["role"]) for t in report["targets"]} == {
        ("big", "closed", "primary"), ("small", "closed", "primary"),
    }  # fmt: skip
    assert report["prompt_tokens"] == 3 and report["completion_tokens"] == 1000
    assert report["quote"]["low_usd"] == pytest.approx(SMALL)
    assert report["quote"]["high_usd"] == pytest.approx(BIG)
    assert [(p["name"], p["effect"]) for p in report["policies"]] == [("log-acme", "log_payload")]
    requests, tokens = report["limits"]
    assert requests["rule"] == "clients.acme.rate_limit.requests_per_minute"
    # each explain is a request of no tokens: three of the client's 50 are gone
    assert requests["remaining"] == 47 and tokens["remaining"] == 100000
    assert report["budgets"][0]["rule"] == "clients.acme.budget.usd_per_day"
    assert report["budgets"][0]["remaining_usd"] == 5
    assert report["decision"] == {"allowed": True}
    # nothing else was counted, no provider called, no telemetry line written
    assert len(_log(config)) == before
    real = _post(base, "/v1/chat/completions", ACME)
    assert real.headers["x-ratelimit-remaining-requests"] == "46"


def test_explain_names_the_refusal_a_request_would_get(gateway: Any) -> None:
    base, _ = gateway
    report = _post(base, "/v1/explain", BETA).json()
    assert report["decision"]["allowed"] is False
    assert report["decision"]["type"] == "policy_denied"
    assert report["decision"]["rule"]["name"] == "policies.no-beta-mix"
    assert [p["name"] for p in report["policies"]] == ["no-beta-mix"]  # its own facts only


def test_a_client_key_explains_only_its_own_requests(gateway: Any) -> None:
    base, _ = gateway
    answer = _post(base, "/v1/explain", ACME, **{"x-client-id": "beta"})
    assert answer.status_code == 403
    assert _post(base, "/v1/explain", "sk-nobody").status_code == 401


def test_the_admin_key_explains_any_client_and_sees_every_rule(gateway: Any) -> None:
    base, _ = gateway
    report = _post(base, "/v1/explain", ADMIN, **{"x-client-id": "beta"}).json()
    assert report["viewer"] == "admin" and report["client"] == {"id": "beta", "tags": {"team": "b"}}
    assert [(p["name"], p["matches"]) for p in report["policies"]] == [
        ("log-acme", False), ("no-beta-mix", True),
    ]  # fmt: skip
    assert all("breaker" in t for t in report["targets"])
    unknown = _post(base, "/v1/explain", ADMIN, **{"x-client-id": "ghost"})
    assert unknown.status_code == 400


def test_a_ceiling_between_the_targets_routes_to_the_cheaper_one(gateway: Any) -> None:
    base, config = gateway
    ceiling = f"{(SMALL + BIG) / 2:.6f}"
    answers = [_post(base, "/v1/chat/completions", SPENDER, **{"x-max-cost-usd": ceiling})
               for _ in range(8)]  # fmt: skip
    assert {a.status_code for a in answers} == {200}
    served = {_line(config, a.headers["x-request-id"])["upstream_model"] for a in answers}
    assert served == {"small"}


def test_a_ceiling_below_every_target_is_refused_before_any_upstream_call(gateway: Any) -> None:
    base, config = gateway
    answer = _post(base, "/v1/chat/completions", SPENDER, **{"x-max-cost-usd": "0.0001"})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "cost_ceiling_exceeded"
    assert "$0.0004003 to $0.03003" in error["message"]
    assert error["rule"]["kind"] == "cost_ceiling"
    line = _line(config, answer.headers["x-request-id"])
    assert line["targets_tried"] == 0 and line["provider"] is None


def test_a_malformed_ceiling_is_a_clear_400(gateway: Any) -> None:
    base, _ = gateway
    answer = _post(base, "/v1/chat/completions", SPENDER, **{"x-max-cost-usd": "cheap"})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "x-max-cost-usd"
