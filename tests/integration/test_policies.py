"""Policy hooks: deny, block_pattern, redact, log_payload and Python hooks, matched by rule."""

from __future__ import annotations

import json
import textwrap

import pytest

from src.config import ConfigError
from src.tools.keys import key_sha256, new_key
from tests.support.configs import UPSTREAM, log_lines, make_config
from tests.support.payloads import chat_body, completion

KEY_A, KEY_B = new_key(), new_key()
CLIENTS = {
    "team-a": {"key_sha256": key_sha256(KEY_A), "tags": {"dept": "finance"}},
    "team-b": {"key_sha256": key_sha256(KEY_B), "tags": {"dept": "eng"}},
}


def auth(key=KEY_A, **headers):
    return {"Authorization": f"Bearer {key}", **headers}


def policy_config(tmp_path, *policies):
    return make_config(tmp_path, clients=CLIENTS, policies=list(policies))


@pytest.fixture
def answering(upstream, provider_key):
    return upstream.post(f"{UPSTREAM}/chat/completions").respond(
        json=completion("Reach me at bob@example.com.")
    )


def sent_messages(route):
    return json.loads(route.calls.last.request.content)["messages"]


@pytest.mark.parametrize(
    ("match", "denied", "allowed"),
    [
        ({"client": "team-a"}, (KEY_A, {}, "default-chat"), (KEY_B, {}, "default-chat")),
        ({"alias": ["solo"]}, (KEY_A, {}, "solo"), (KEY_A, {}, "default-chat")),
        ({"provider": "secondary"}, (KEY_A, {}, "default-chat"), (KEY_A, {}, "solo")),
        ({"tags": {"dept": "finance"}}, (KEY_A, {}, "solo"), (KEY_B, {}, "solo")),
        (
            {"use_case": "hr"},
            (KEY_A, {"X-Use-Case": "hr"}, "solo"),
            (KEY_A, {"X-Use-Case": "sales"}, "solo"),
        ),
    ],
    ids=["client", "alias", "provider", "tags", "use_case"],
)
async def test_deny_matches_its_rule_and_names_it(
    gateway_client, answering, tmp_path, match, denied, allowed
):
    client = await gateway_client(
        policy_config(tmp_path, {"name": "no-go", "match": match, "action": "deny"})
    )
    key, headers, model = denied
    response = await client.post(
        "/v1/chat/completions", json={**chat_body(), "model": model}, headers=auth(key, **headers)
    )
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "policy_denied"
    assert "'no-go'" in response.json()["error"]["message"]
    assert not answering.called
    key, headers, model = allowed
    response = await client.post(
        "/v1/chat/completions", json={**chat_body(), "model": model}, headers=auth(key, **headers)
    )
    assert response.status_code == 200


async def test_deny_works_in_open_mode_on_the_callers_name(gateway_client, answering, tmp_path):
    config = make_config(
        tmp_path, policies=[{"name": "ban", "match": {"client": "mallory"}, "action": "deny"}]
    )
    client = await gateway_client(config)
    seed = await client.post("/v1/chat", json={**chat_body(), "client_id": "mallory"})
    assert seed.status_code == 403 and seed.json()["error"]["type"] == "policy_denied"
    assert (
        await client.post("/v1/chat", json={**chat_body(), "client_id": "alice"})
    ).status_code == 200


async def test_redact_replaces_patterns_before_the_prompt_leaves(
    gateway_client, answering, tmp_path
):
    rule = {
        "name": "pii", "action": "redact", "presets": ["email", "card_number"],
        "patterns": [r"TICKET-\d+"], "replacement": "[X]",
    }  # fmt: skip
    client = await gateway_client(policy_config(tmp_path, rule))
    text = "Mail ann.lee@corp.example.org, card 4111 1111 1111 1111, ref TICKET-42, total 12 EUR."
    body = {
        "model": "solo",
        "messages": [
            {"role": "system", "content": "card 5500-0000-0000-0004"},
            {"role": "user", "content": [{"type": "text", "text": text}]},
        ],
    }
    response = await client.post("/v1/chat/completions", json=body, headers=auth())
    assert response.status_code == 200
    sent = sent_messages(answering)
    assert sent[0]["content"] == "card [X]"
    assert sent[1]["content"][0]["text"] == "Mail [X], card [X], ref [X], total 12 EUR."


async def test_block_pattern_is_400_content_blocked(gateway_client, answering, tmp_path):
    rule = {"name": "no-secrets", "action": "block_pattern", "presets": ["secret"]}
    client = await gateway_client(policy_config(tmp_path, rule))
    leaked = chat_body("my key is sk-proj-abcdefghijklmnopqrstuv please")
    response = await client.post("/v1/chat", json=leaked, headers=auth())
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "content_blocked",
        "message": "The request contains content blocked by policy 'no-secrets'.",
    }
    assert not answering.called
    assert (
        await client.post("/v1/chat", json=chat_body("hello"), headers=auth())
    ).status_code == 200


async def test_log_payload_logs_request_and_answer_with_secrets_masked(
    gateway_client, answering, tmp_path
):
    rule = {
        "name": "audit-finance",
        "match": {"tags": {"dept": "finance"}},
        "action": "log_payload",
    }
    config = policy_config(tmp_path, rule)
    client = await gateway_client(config)
    body = chat_body("use key sk-live-0123456789abcdefXYZ", user="u1", api_key="plain-secret-value")
    assert (await client.post("/v1/chat/completions", json=body, headers=auth())).status_code == 200
    assert (
        await client.post("/v1/chat/completions", json=body, headers=auth(KEY_B))
    ).status_code == 200
    client.app.state.telemetry.writer.close()
    logged, unlogged = log_lines(config)
    payload = logged["payload"]
    assert logged["policies"] == ["audit-finance"]
    assert payload["request"]["messages"][0]["content"] == "use key [REDACTED:secret]"
    assert payload["request"]["user"] == "u1"
    assert payload["request"]["api_key"] == "[REDACTED:secret]"
    assert payload["response"]["choices"][0]["message"]["content"] == "Reach me at bob@example.com."
    assert "payload" not in unlogged and unlogged["policies"] == []
    text = (tmp_path / "logs" / "gateway.log").read_text()
    assert "sk-live-0123456789" not in text and "plain-secret-value" not in text


HOOK_MODULE = """
    CALLS = []

    def screen(event):
        CALLS.append((event.phase, event.policy, event.client_id, event.alias, event.use_case))
        if event.phase == "request":
            if "forbidden" in event.body["messages"][-1]["content"]:
                return "no forbidden topics"
            event.body["messages"].insert(0, {"role": "system", "content": "Be brief."})
        elif event.answer is not None:
            event.answer["choices"][0]["message"]["content"] += " [checked]"

    async def broken(event):
        raise ValueError("boom")
"""


@pytest.fixture
def hook_module(tmp_path, monkeypatch):
    (tmp_path / "team_hooks.py").write_text(textwrap.dedent(HOOK_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "team_hooks"
    import sys

    sys.modules.pop("team_hooks", None)


async def test_a_python_hook_from_config_runs_before_and_after(
    gateway_client, answering, tmp_path, hook_module
):
    rule = {"name": "screen", "action": "hook", "hook": f"{hook_module}:screen"}
    client = await gateway_client(policy_config(tmp_path, rule))
    ok = await client.post(
        "/v1/chat/completions", json=chat_body("hello"), headers=auth(**{"X-Use-Case": "support"})
    )
    assert ok.status_code == 200
    assert ok.json()["choices"][0]["message"]["content"] == "Reach me at bob@example.com. [checked]"
    assert sent_messages(answering)[0] == {"role": "system", "content": "Be brief."}
    import team_hooks  # type: ignore[import-not-found]  # written by the fixture

    assert team_hooks.CALLS == [
        ("request", "screen", "team-a", "default-chat", "support"),
        ("response", "screen", "team-a", "default-chat", "support"),
    ]
    refused = await client.post("/v1/chat/completions", json=chat_body("forbidden"), headers=auth())
    assert refused.status_code == 403
    assert (
        refused.json()["error"]["message"]
        == "Request denied by policy 'screen': no forbidden topics"
    )
    assert answering.call_count == 1


async def test_a_failing_hook_stops_the_call(gateway_client, answering, tmp_path, hook_module):
    rule = {"name": "fragile", "action": "hook", "hook": f"{hook_module}:broken"}
    client = await gateway_client(policy_config(tmp_path, rule))
    response = await client.post("/v1/chat/completions", json=chat_body(), headers=auth())
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "policy_error"
    assert not answering.called


def test_a_hook_that_cannot_be_imported_stops_start_up(tmp_path):
    from src.edge.app import create_app

    config = policy_config(tmp_path, {"name": "h", "action": "hook", "hook": "no_such_module_x:f"})
    with pytest.raises(ConfigError, match=r"policies\.0\.hook: cannot import 'no_such_module_x'"):
        create_app(config)


async def test_redact_and_block_apply_to_embeddings_input(
    gateway_client, upstream, provider_key, tmp_path
):
    route = upstream.post(f"{UPSTREAM}/embeddings").respond(
        json={"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}]}
    )
    rules = (
        {"name": "pii", "action": "redact", "presets": ["email"]},
        {"name": "no-secrets", "action": "block_pattern", "presets": ["secret"]},
    )
    client = await gateway_client(policy_config(tmp_path, *rules))
    body = {"model": "solo", "input": ["mail a@b.example.com", "plain"]}
    assert (await client.post("/v1/embeddings", json=body, headers=auth())).status_code == 200
    assert json.loads(route.calls.last.request.content)["input"] == ["mail [REDACTED]", "plain"]
    blocked = await client.post(
        "/v1/embeddings", json={"model": "solo", "input": "AKIAIOSFODNN7EXAMPLE"}, headers=auth()
    )
    assert blocked.status_code == 400 and blocked.json()["error"]["type"] == "content_blocked"
    assert route.call_count == 1
