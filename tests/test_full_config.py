"""The companion config/full.config.json: it loads, uses every routing and provider feature, and runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from src.config import load_config, parse_config
from tests.conftest import log_lines

FULL = Path(__file__).resolve().parent.parent / "config" / "full.config.json"
KEY_VARIABLES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AZURE_OPENAI_API_KEY", "VLLM_API_KEY")


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


@pytest.fixture
def full_config(tmp_path, monkeypatch):
    for variable in KEY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)  # every provider in stub mode
    data = json.loads(FULL.read_text())
    data["log_file"] = str(tmp_path / "gateway.log")
    return parse_config(data)


async def test_full_config_serves_every_endpoint_in_stub_mode(gateway_client, full_config):
    client = await gateway_client(full_config)
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    support = await client.post(
        "/v1/chat/completions",
        json={"model": "default-chat", **chat},
        headers={"X-Use-Case": "support"},
    )
    weighted = await client.post("/v1/chat/completions", json={"model": "default-chat", **chat})
    claude = await client.post(
        "/v1/messages", json={"model": "claude-opus-x", "max_tokens": 10, **chat}
    )
    batch = await client.post(
        "/v1/chat/completions",
        json={"model": "default-chat", **chat},
        headers={"X-Client-Id": "batch-7"},
    )
    embed = await client.post("/v1/embeddings", json={"model": "embed", "input": "hello"})
    for response in (support, weighted, claude, batch, embed):
        assert response.status_code == 200, response.text
    assert claude.json()["type"] == "message"
    health = (await client.get("/healthz?verbose=1")).json()
    assert (
        health["status"] == "ok" and len(health["targets"]) == 9
    )  # distinct (provider, model) pairs
    client.app.state.telemetry.writer.close()
    lines = log_lines(full_config)
    assert [line["route"] for line in lines] == [
        "support-desk",
        None,
        "claude-family",
        "nightly-batch",
        None,
    ]
    assert lines[0]["upstream_model"] == "llama-3.1-8b-instruct"  # the cheapest of cheap-chat
    assert lines[1]["provider"] in {"openai", "azure"}
    assert lines[2]["alias"] == "claude" and lines[2]["provider"] == "anthropic"
    assert lines[4]["endpoint"] == "/v1/embeddings"
