"""The Anthropic adapter: OpenAI-shaped requests to the Messages API and answers back, streams too."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.anthropic_events import (
    ANTHROPIC,
    ANTHROPIC_KEY,
    error_event,
    message,
    sse,
    text_stream,
    tool_stream,
)
from tests.support.configs import log_lines, make_config
from tests.support.payloads import completion

MESSAGES = f"{ANTHROPIC}/messages"
SECONDARY = "http://secondary.test/v1/chat/completions"


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", ANTHROPIC_KEY)
    return make_config(
        tmp_path,
        providers={
            "claude": {
                "type": "anthropic",
                "base_url": ANTHROPIC,
                "api_key_env": "TEST_ANTHROPIC_KEY",
                "timeout_s": 2,
                "default_max_tokens": 1000,
            },
            "secondary": {"type": "openai", "base_url": "http://secondary.test/v1", "timeout_s": 2},
        },
        aliases={
            "sonnet": {
                "provider": "claude",
                "model": "claude-sonnet-4-5",
                "fallbacks": [{"provider": "secondary", "model": "up-model-b"}],
            }
        },
    )


def body(**extra):
    return {"model": "sonnet", "messages": [{"role": "user", "content": "Hello"}], **extra}


async def test_request_carries_key_version_and_translated_body(gateway_client, upstream, config):
    route = upstream.post(MESSAGES).respond(json=message())
    client = await gateway_client(config)
    response = await client.post(
        "/v1/chat/completions",
        json=body(
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": "Answer in English."},
                {"role": "user", "content": "Hello"},
            ],
            temperature=0.5,
            top_p=0.9,
            stop="END",
            user="u-42",
        ),
    )
    assert response.status_code == 200
    sent = route.calls.last.request
    assert sent.headers["x-api-key"] == ANTHROPIC_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    payload = json.loads(sent.content)
    assert payload == {
        "model": "claude-sonnet-4-5",
        "system": "Be brief.\n\nAnswer in English.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
        "max_tokens": 1000,  # the provider's default_max_tokens: the client gave none
        "temperature": 0.5,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-42"},
    }


async def test_client_max_tokens_and_stop_list_are_used(gateway_client, upstream, config):
    route = upstream.post(MESSAGES).respond(json=message())
    client = await gateway_client(config)
    await client.post("/v1/chat/completions", json=body(max_completion_tokens=77, stop=["a", "b"]))
    payload = json.loads(route.calls.last.request.content)
    assert payload["max_tokens"] == 77 and payload["stop_sequences"] == ["a", "b"]


async def test_answer_translates_content_finish_reason_and_usage(
    gateway_client, upstream, config, validate_schema
):
    usage = {"input_tokens": 20, "output_tokens": 7, "cache_read_input_tokens": 5}
    upstream.post(MESSAGES).respond(json=message(stop_reason="max_tokens", usage=usage))
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=body())
    answer = response.json()
    validate_schema(answer, "CreateChatCompletionResponse")
    assert answer["model"] == "sonnet"
    assert answer["choices"][0]["message"]["content"] == "Hi! My name is Claude."
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["prompt_tokens"] == 25 and answer["usage"]["completion_tokens"] == 7
    assert answer["usage"]["prompt_tokens_details"] == {"cached_tokens": 5}


async def test_tools_both_ways(gateway_client, upstream, config):
    tool_use = {
        "type": "tool_use",
        "id": "toolu_9",
        "name": "get_weather",
        "input": {"city": "Oslo"},
    }
    route = upstream.post(MESSAGES).respond(
        json=message([{"type": "text", "text": "Checking."}, tool_use], stop_reason="tool_use")
    )
    client = await gateway_client(config)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    history = [
        {"role": "user", "content": "Weather in Bergen and Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Bergen"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Rain, 9 C"},
    ]
    response = await client.post(
        "/v1/chat/completions",
        json=body(messages=history, tools=tools, tool_choice="required", parallel_tool_calls=False),
    )
    payload = json.loads(route.calls.last.request.content)
    assert payload["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    assert payload["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert payload["messages"][1] == {
        "role": "assistant",
        "content": [
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {"city": "Bergen"},
            }
        ],
    }
    assert payload["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Rain, 9 C"}],
    }
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Checking."
    [call] = choice["message"]["tool_calls"]
    assert call["id"] == "toolu_9" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}


async def test_image_parts_become_image_blocks(gateway_client, upstream, config):
    route = upstream.post(MESSAGES).respond(json=message())
    client = await gateway_client(config)
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    await client.post(
        "/v1/chat/completions", json=body(messages=[{"role": "user", "content": content}])
    )
    blocks = json.loads(route.calls.last.request.content)["messages"][0]["content"]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    assert blocks[2] == {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/cat.jpg"},
    }


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"n": 2}, "n"),
        ({"temperature": 1.5}, "temperature"),
        ({"logprobs": True}, "logprobs"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}
                ]
            },
            "messages.0.content.0.type",
        ),
    ],
)
async def test_a_field_anthropic_cannot_take_is_a_400_naming_field_and_provider(
    gateway_client, upstream, config, extra, field
):
    route = upstream.post(MESSAGES).respond(json=message())
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=body(**extra))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == field
    assert error["message"].startswith(f"{field}: provider 'claude' (anthropic) cannot take it")
    assert route.call_count == 0


async def test_upstream_overload_falls_back(gateway_client, upstream, config):
    upstream.post(MESSAGES).respond(
        529, json={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    fallback = upstream.post(SECONDARY).respond(json=completion("from openai", model="up-model-b"))
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=body())
    assert response.status_code == 200 and fallback.call_count == 1


async def test_anthropic_400_is_passed_on_with_its_message(gateway_client, upstream, config):
    upstream.post(MESSAGES).respond(
        400,
        json={
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "max_tokens: too big"},
        },
    )
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=body())
    assert response.status_code == 400
    assert "max_tokens: too big" in response.json()["error"]["message"]


def stream_of(events):
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse(events))


def chunks_of(response):
    lines = [line[6:] for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


async def test_stream_events_become_openai_chunks_with_usage(
    gateway_client, upstream, config, validate_schema
):
    route = upstream.post(MESSAGES).mock(
        return_value=stream_of(text_stream(("Hello", " there", "!")))
    )
    client = await gateway_client(config)
    response = await client.post(
        "/v1/chat/completions", json=body(stream=True, stream_options={"include_usage": True})
    )
    assert json.loads(route.calls.last.request.content)["stream"] is True
    chunks = chunks_of(response)
    for chunk in chunks:
        validate_schema(chunk, "CreateChatCompletionStreamResponse")
        assert chunk["model"] == "sonnet"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello there!"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 25, "completion_tokens": 15, "total_tokens": 40}


async def test_streamed_tool_use_becomes_tool_call_deltas(gateway_client, upstream, config):
    upstream.post(MESSAGES).mock(return_value=stream_of(tool_stream()))
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=body(stream=True))
    chunks = chunks_of(response)
    calls = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert calls[0]["id"] == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    assert calls[0]["function"]["name"] == "get_weather"
    assert {call["index"] for call in calls} == {0}
    arguments = "".join(call["function"]["arguments"] for call in calls)
    assert json.loads(arguments) == {"location": "San Francisco, CA"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_error_event_before_content_falls_back(gateway_client, upstream, config):
    upstream.post(MESSAGES).mock(return_value=stream_of([error_event()]))
    upstream.post(SECONDARY).mock(
        return_value=httpx.Response(
            200,
            content=b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
            b'"choices":[{"index":0,"delta":{"content":"fallback"},"finish_reason":null}]}\n\ndata: [DONE]\n\n',
        )
    )
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=body(stream=True))
    assert "fallback" in response.text and response.text.endswith("data: [DONE]\n\n")


async def test_error_event_midway_ends_the_stream_with_an_error(gateway_client, upstream, config):
    events = [*text_stream()[:4], error_event()]
    upstream.post(MESSAGES).mock(return_value=stream_of(events))
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=body(stream=True))
    assert "[DONE]" not in response.text
    last = json.loads(response.text.strip().split("\n\n")[-1][6:])
    assert last["error"]["type"] == "upstream_error"
    assert "overloaded_error" in last["error"]["message"]
    client.app.state.telemetry.writer.close()
    assert log_lines(config)[-1]["outcome"] == "upstream_error"


async def test_stream_without_message_stop_is_a_failure(gateway_client, upstream, config):
    upstream.post(MESSAGES).mock(return_value=stream_of(text_stream()[:-1]))
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=body(stream=True))
    assert "without message_stop" in response.text and "[DONE]" not in response.text


async def test_provider_key_never_reaches_the_client(gateway_client, upstream, config):
    upstream.post(MESSAGES).respond(
        400,
        json={
            "type": "error",
            "error": {"type": "invalid_request_error", "message": f"bad key {ANTHROPIC_KEY}"},
        },
    )
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=body())
    assert response.status_code == 400
    assert "withheld" in response.json()["error"]["message"]
    assert ANTHROPIC_KEY[4:12] not in response.text
