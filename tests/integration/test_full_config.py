"""The companion config/full.config.json: it loads, uses every routing and provider feature, and runs."""

from __future__ import annotations

import json

import pytest

from src.config import parse_config
from tests.support import ROOT
from tests.support.configs import log_lines

FULL = ROOT / "config" / "full.config.json"
KEY_VARIABLES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AZURE_OPENAI_API_KEY", "VLLM_API_KEY")


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
