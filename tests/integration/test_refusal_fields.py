"""One clear refusal, end to end through a gateway process: every refusal by a rule names it, its scope,
what remains and when it resets, in the body and in the IETF RateLimit fields."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support.configs import stub_config
from tests.support.gateway import running_gateway

pytestmark = pytest.mark.slow

KEY, PAYER = "sk-refusals-acme-1", "sk-refusals-payer-1"
# Clients of their own for the tests that count remaining requests: any order gives the same counts.
COUNTED, STREAMED = "sk-refusals-counted-1", "sk-refusals-streamed-1"
CHAT = {"model": "default-chat", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("refusals")
    config = stub_config(
        home,
        aliases={"default-chat": {"provider": "openai", "model": "gpt-4o-mini"},
                 "pricey": {"provider": "openai", "model": "gold"}},
        pricing={"openai": {"gold": {"input_usd_per_mtok": 1e6, "output_usd_per_mtok": 0}}},
        rate_limit={"requests_per_minute": 3, "tokens_per_minute": 100000},
        clients={"acme": {"key_sha256": hashlib.sha256(KEY.encode()).hexdigest()},
                 "counted": {"key_sha256": hashlib.sha256(COUNTED.encode()).hexdigest()},
                 "streamed": {"key_sha256": hashlib.sha256(STREAMED.encode()).hexdigest()},
                 "payer": {"key_sha256": hashlib.sha256(PAYER.encode()).hexdigest(),
                           "budget": {"usd_per_day": 1}}},
        policies=[{"name": "no-poems", "action": "block_pattern", "patterns": ["poem"],
                   "match": {"alias": "default-chat"}}],
    )  # fmt: skip
    with running_gateway(config, home) as gateway:
        yield gateway.base_url


def _chat(base: str, path: str, body: dict[str, Any], key: str = KEY) -> httpx.Response:
    return httpx.post(base + path, json=body, headers={"authorization": f"Bearer {key}"},
                      timeout=10)  # fmt: skip


def test_answers_carry_the_ietf_fields_beside_the_x_ratelimit_ones(base: str) -> None:
    answer = _chat(base, "/v1/chat/completions", CHAT, COUNTED)
    assert answer.status_code == 200
    assert answer.headers["x-ratelimit-remaining-requests"] == "2"
    assert answer.headers["ratelimit-policy"] == (
        '"rate_limit.requests_per_minute";q=3;w=60, '
        '"rate_limit.tokens_per_minute";q=100000;w=60;qu="tokens"'
    )
    assert answer.headers["ratelimit"].startswith('"rate_limit.requests_per_minute";r=2, ')


def test_streamed_answers_carry_them_too(base: str) -> None:
    assert _chat(base, "/v1/chat/completions", CHAT, STREAMED).status_code == 200
    with httpx.stream("POST", base + "/v1/chat/completions", json={**CHAT, "stream": True},
                      headers={"authorization": f"Bearer {STREAMED}"}, timeout=10) as answer:  # fmt: skip
        assert answer.status_code == 200
        assert answer.headers["ratelimit"].startswith('"rate_limit.requests_per_minute";r=1')
        assert "ratelimit-policy" in answer.headers
        answer.read()


def test_a_policy_refusal_names_its_rule_and_scope(
    base: str, validate_schema: Callable[[Any, str], None]
) -> None:
    answer = _chat(base, "/v1/chat/completions",
                   {**CHAT, "messages": [{"role": "user", "content": "a poem"}]})  # fmt: skip
    assert answer.status_code == 400
    body = answer.json()
    validate_schema(body, "ErrorResponse")
    assert body["error"]["rule"] == {
        "name": "policies.no-poems", "kind": "policy", "scope": "alias=default-chat",
        "limit": 0, "remaining": 0, "unit": "requests", "reset_s": None, "window_s": None,
    }  # fmt: skip
    assert answer.headers["ratelimit"] == '"policies.no-poems";r=0'
    assert answer.headers["ratelimit-policy"].startswith('"policies.no-poems";q=0, ')


def test_a_budget_refusal_names_its_rule_and_reset(base: str) -> None:
    first = _chat(base, "/v1/chat/completions", {**CHAT, "model": "pricey"}, PAYER)
    assert first.status_code == 200  # its cost ($2) spends the $1 budget
    answer = _chat(base, "/v1/chat/completions", {**CHAT, "model": "pricey"}, PAYER)
    assert answer.status_code == 429
    rule = answer.json()["error"]["rule"]
    assert (rule["name"], rule["kind"], rule["scope"]) == (
        "clients.payer.budget.usd_per_day", "budget", "client:payer",
    )  # fmt: skip
    assert rule["remaining"] == 0 and rule["reset_s"] == int(answer.headers["retry-after"])
    assert answer.headers["ratelimit"] == (
        f'"clients.payer.budget.usd_per_day";r=0;t={rule["reset_s"]}'
    )
    assert (
        '"clients.payer.budget.usd_per_day";q=1000000;qu="usd-micros"'
        in answer.headers["ratelimit-policy"]
    )


def test_the_seed_rate_limit_body_stays_exact_and_the_rule_is_in_the_fields(base: str) -> None:
    answers = [_chat(base, "/v1/chat", CHAT) for _ in range(4)]  # 3 a minute at most
    assert answers[-1].status_code == 429
    answer = answers[-1]
    assert answer.json() == {
        "error": {
            "type": "rate_limit_exceeded",
            "message": "Request rate exceeded for client_id acme (3 req/min).",
        }
    }
    reset = int(answer.headers["retry-after"])
    assert answer.headers["ratelimit"] == f'"rate_limit.requests_per_minute";r=0;t={reset}'
    assert answer.headers["x-ratelimit-remaining-requests"] == "0"
    completions = _chat(base, "/v1/chat/completions", CHAT)
    rule = completions.json()["error"]["rule"]
    assert rule["name"] == "rate_limit.requests_per_minute" and rule["window_s"] == 60
    assert rule["limit"] == 3 and rule["remaining"] == 0 and rule["scope"] == "client:acme"
