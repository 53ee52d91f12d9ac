"""End to end through a gateway process: embeddings with the official OpenAI SDK, and
/v1/messages with the official Anthropic SDK (plain and streamed), in front of an OpenAI-type
upstream on loopback that echoes the last user message."""

from __future__ import annotations

import json
import time

import anthropic
import httpx
import openai
import pytest

from tests.support.gateway import GatewayProcess
from tests.support.upstream import FakeUpstream

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    with FakeUpstream() as upstream:
        upstream.behave(echo=True, prompt_tokens=9, completion_tokens=4)
        upstream.behave("fake-embed", prompt_tokens=6)
        config = {
            "providers": {
                "fake": {"type": "openai", "base_url": upstream.base_url, "timeout_s": 5}
            },
            "aliases": {
                "chat": {"provider": "fake", "model": "fake-chat"},
                "embed": {"provider": "fake", "model": "fake-embed"},
            },
            "routes": [
                {"name": "claude-family", "match": {"model": ["claude-*"]}, "alias": "chat"}
            ],
            "rate_limit": {"requests_per_minute": 1000, "tokens_per_minute": 100000},
            "log_file": str(tmp / "gateway.log"),
        }
        with GatewayProcess(config, tmp) as gateway:
            yield gateway.base_url, tmp / "gateway.log"


def log_of(path, endpoint):
    time.sleep(0.2)  # the writer flushes every 50 ms
    return [json.loads(line) for line in path.read_text().splitlines() if endpoint in line]


def test_embeddings_with_the_openai_sdk(servers):
    gateway, log = servers
    client = openai.OpenAI(
        base_url=gateway + "/v1", api_key="unused", default_headers={"X-Client-Id": "emb-user"}
    )
    result = client.embeddings.create(model="embed", input=["hello", "hi"])
    assert result.model == "embed"
    assert [item.embedding for item in result.data] == [[5.0, 0.5, -0.5], [2.0, 0.5, -0.5]]
    assert [item.index for item in result.data] == [0, 1]
    assert result.usage.prompt_tokens == 6 and result.usage.total_tokens == 6
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nope", input="hello")
    line = [entry for entry in log_of(log, "/v1/embeddings") if entry["status"] == 200][-1]
    assert line["client_id"] == "emb-user" and line["upstream_model"] == "fake-embed"
    assert line["prompt_tokens"] == 6 and line["completion_tokens"] == 0


def anthropic_client(gateway):
    return anthropic.Anthropic(
        base_url=gateway,
        api_key="unused",
        default_headers={"X-Client-Id": "claude-user"},
        max_retries=0,
    )


def test_messages_with_the_anthropic_sdk(servers):
    gateway, log = servers
    message = anthropic_client(gateway).messages.create(
        model="claude-gateway-test",
        max_tokens=100,
        system="You echo.",
        messages=[{"role": "user", "content": "Hello gateway"}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "claude-gateway-test"
    assert [block.text for block in message.content] == ["echo: Hello gateway"]
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 9 and message.usage.output_tokens == 4
    line = [entry for entry in log_of(log, "/v1/messages") if not entry["stream"]][-1]
    assert line["client_id"] == "claude-user" and line["route"] == "claude-family"
    assert line["alias"] == "chat" and line["provider"] == "fake"


def test_streamed_messages_with_the_anthropic_sdk(servers):
    gateway, log = servers
    with anthropic_client(gateway).messages.stream(
        model="claude-gateway-test",
        max_tokens=100,
        messages=[{"role": "user", "content": "Stream me"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: Stream me"
    assert final.content[0].text == "echo: Stream me"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4
    line = [entry for entry in log_of(log, "/v1/messages") if entry["stream"]][-1]
    assert line["outcome"] == "completed" and line["completion_tokens"] == 4


def test_messages_stream_uses_anthropics_event_framing(servers):
    gateway, _ = servers
    body = {
        "model": "chat",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with httpx.stream("POST", gateway + "/v1/messages", json=body) as response:
        raw = response.read().decode()
    events = [block.split("\n") for block in raw.strip().split("\n\n")]
    names = [lines[0].removeprefix("event: ") for lines in events]
    assert names[0] == "message_start" and names[1] == "content_block_start"
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    for name, data in ((lines[0][7:], lines[1]) for lines in events):
        assert json.loads(data.removeprefix("data: "))["type"] == name


def test_messages_errors_use_anthropics_envelope(servers):
    gateway, _ = servers
    with pytest.raises(anthropic.NotFoundError) as err:
        anthropic_client(gateway).messages.create(
            model="gpt-unknown", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert isinstance(err.value.body, dict)
    assert err.value.body["type"] == "error"
    assert err.value.body["error"]["type"] == "not_found_error"
