"""POST /v1/messages in-process: Anthropic's request to the gateway's OpenAI shape and back."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.anthropic_events import ANTHROPIC, ANTHROPIC_KEY, message, sse, text_stream
from tests.support.configs import UPSTREAM, log_lines, make_config
from tests.support.payloads import completion

PRIMARY = f"{UPSTREAM}/chat/completions"


@pytest.fixture
def config(tmp_path, provider_key, monkeypatch):
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", ANTHROPIC_KEY)
    return make_config(
        tmp_path,
        providers={
            "primary": {"type": "openai", "base_url": UPSTREAM, "api_key_env": "TEST_PRIMARY_KEY"},
            "claude": {
                "type": "anthropic",
                "base_url": ANTHROPIC,
                "api_key_env": "TEST_ANTHROPIC_KEY",
            },
        },
        aliases={
            "default-chat": {"provider": "primary", "model": "up-model-a"},
            "via-claude": {"provider": "claude", "model": "claude-up"},
        },
        rate_limit={"requests_per_minute": 100, "tokens_per_minute": 10000},
    )


def body(**extra):
    return {
        "model": "default-chat",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Hi"}],
        **extra,
    }


async def test_request_is_translated_for_an_openai_upstream(gateway_client, upstream, config):
    route = upstream.post(PRIMARY).respond(json=completion("Hello!"))
    client = await gateway_client(config)
    response = await client.post(
        "/v1/messages",
        json=body(
            system=[{"type": "text", "text": "Be kind.", "cache_control": {"type": "ephemeral"}}],
            stop_sequences=["STOP"],
            temperature=0.2,
            top_k=5,
            metadata={"user_id": "u-1"},
        ),
    )
    assert response.status_code == 200
    sent = json.loads(route.calls.last.request.content)
    assert sent == {
        "model": "up-model-a",
        "messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 64,
        "temperature": 0.2,
        "top_k": 5,
        "stop": ["STOP"],
        "user": "u-1",
    }
    answer = response.json()
    assert answer["type"] == "message" and answer["model"] == "default-chat"
    assert answer["id"].startswith("msg_")
    assert answer["content"] == [{"type": "text", "text": "Hello!"}]
    assert answer["usage"] == {"input_tokens": 11, "output_tokens": 5}
    assert answer["stop_reason"] == "end_turn"
    assert response.headers["x-ratelimit-limit-tokens"] == "10000"


async def test_tools_travel_both_ways(gateway_client, upstream, config):
    answer = completion(None)
    answer["choices"][0]["finish_reason"] = "tool_calls"
    answer["choices"][0]["message"]["tool_calls"] = [
        {
            "id": "call_7",
            "type": "function",
            "function": {"name": "lookup", "arguments": '{"q": "gateway"}'},
        }
    ]
    route = upstream.post(PRIMARY).respond(json=answer)
    client = await gateway_client(config)
    history = [
        {"role": "user", "content": "Find it"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "call_1", "name": "lookup", "input": {"q": "x"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "call_1",
                    "content": [{"type": "text", "text": "none"}],
                },
                {"type": "text", "text": "Try again"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "AAA="},
                },
            ],
        },
    ]
    tools = [{"name": "lookup", "description": "Search", "input_schema": {"type": "object"}}]
    response = await client.post(
        "/v1/messages",
        json=body(messages=history, tools=tools, tool_choice={"type": "tool", "name": "lookup"}),
    )
    sent = json.loads(route.calls.last.request.content)
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {"type": "object"},
                "description": "Search",
            },
        }
    ]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
    assert sent["messages"][1] == {
        "role": "assistant",
        "content": "Looking.",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"q":"x"}'},
            }
        ],
    }
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "none"}
    assert sent["messages"][3]["content"] == [
        {"type": "text", "text": "Try again"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA="}},
    ]
    reply = response.json()
    assert reply["stop_reason"] == "tool_use"
    assert reply["content"] == [
        {"type": "tool_use", "id": "call_7", "name": "lookup", "input": {"q": "gateway"}}
    ]


async def test_anthropic_to_anthropic_round_trips(gateway_client, upstream, config):
    route = upstream.post(f"{ANTHROPIC}/messages").respond(json=message())
    client = await gateway_client(config)
    response = await client.post("/v1/messages", json=body(model="via-claude", system="Be brief."))
    sent = json.loads(route.calls.last.request.content)
    assert (
        sent["system"] == "Be brief." and sent["max_tokens"] == 64 and sent["model"] == "claude-up"
    )
    assert response.json()["content"] == [{"type": "text", "text": "Hi! My name is Claude."}]
    assert response.json()["usage"] == {"input_tokens": 2095, "output_tokens": 503}


async def test_anthropic_stream_relayed_as_anthropic_events(gateway_client, upstream, config):
    upstream.post(f"{ANTHROPIC}/messages").mock(
        return_value=httpx.Response(200, content=sse(text_stream(("Hel", "lo"))))
    )
    client = await gateway_client(config)
    response = await client.post("/v1/messages", json=body(model="via-claude", stream=True))
    events = [json.loads(block.split("\n")[1][6:]) for block in response.text.strip().split("\n\n")]
    deltas = [e["delta"]["text"] for e in events if e["type"] == "content_block_delta"]
    assert deltas == ["Hel", "lo"]
    end = next(e for e in events if e["type"] == "message_delta")
    assert end["usage"] == {"output_tokens": 15}  # passed through as the provider sent it
    assert events[-1] == {"type": "message_stop"}


async def test_streamed_tool_calls_become_tool_use_blocks(gateway_client, upstream, config):
    def chunk(delta, finish=None):
        data = {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    content = (
        chunk({"role": "assistant", "content": "On it."})
        + chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": ""},
                    }
                ]
            }
        )
        + chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a": 1}'}}]})
        + chunk({}, "tool_calls")
        + b"data: [DONE]\n\n"
    )
    upstream.post(PRIMARY).mock(return_value=httpx.Response(200, content=content))
    client = await gateway_client(config)
    response = await client.post("/v1/messages", json=body(stream=True))
    events = [json.loads(block.split("\n")[1][6:]) for block in response.text.strip().split("\n\n")]
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert starts == [
        {"type": "text", "text": ""},
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {}},
    ]
    partial = [
        e["delta"]["partial_json"]
        for e in events
        if e["type"] == "content_block_delta" and e["index"] == 1
    ]
    assert json.loads("".join(partial)) == {"a": 1}
    assert (
        next(e for e in events if e["type"] == "message_delta")["delta"]["stop_reason"]
        == "tool_use"
    )


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking"),
        (
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
            "messages.0.content.0.type",
        ),
    ],
)
async def test_untranslatable_fields_are_a_clear_400(
    gateway_client, upstream, config, extra, param
):
    route = upstream.post(PRIMARY).respond(json=completion())
    client = await gateway_client(config)
    response = await client.post("/v1/messages", json=body(**extra))
    assert response.status_code == 400 and route.call_count == 0
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith(
        f"{param}: provider 'primary' (openai) cannot take it"
    )


async def test_invalid_body_and_limits_use_anthropics_envelope(
    gateway_client, upstream, tmp_path, provider_key
):
    upstream.post(PRIMARY).respond(json=completion())
    # the refused body counts against the limit too: 2 requests, the third is refused
    config = make_config(tmp_path, rate_limit={"requests_per_minute": 2})
    client = await gateway_client(config)
    missing = await client.post(
        "/v1/messages",
        json={"model": "default-chat", "messages": [{"role": "user", "content": "x"}]},
    )
    assert missing.status_code == 400
    assert missing.json() == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "Invalid request: max_tokens: Field required.",
        },
    }
    assert (await client.post("/v1/messages", json=body())).status_code == 200
    too_many = await client.post("/v1/messages", json=body())
    assert too_many.status_code == 429 and too_many.json()["error"]["type"] == "rate_limit_error"
    assert "retry-after" in too_many.headers
    client.app.state.telemetry.writer.close()
    lines = log_lines(config)
    assert [line["endpoint"] for line in lines] == ["/v1/messages"] * 3
    assert lines[2]["error_type"] == "rate_limit_exceeded"
