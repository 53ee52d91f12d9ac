"""Native fidelity, end to end: the official SDKs through the real gateway to a loopback provider.

The gateway runs as a subprocess; the fake provider (``tests.support.upstream``)
answers what each test queued for a path and records the bytes it receives. Same dialect in and out: what the SDK sent arrives as it
was sent (the model replaced) and what the provider answered reaches the SDK
field for field. Across dialects: translated, and shaped as the published
schemas say.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.support.anthropic_events import message as anthropic_message
from tests.support.gateway import running_gateway
from tests.support.payloads import completion
from tests.support.schema import responses_validator
from tests.support.upstream import Canned, FakeUpstream

OPENAI_KEY = "sk-proj-upstream-OPENAI-0123456789"
ANTHROPIC_KEY = "sk-ant-upstream-ANTHROPIC-0123456789"


class Sent:
    """The bytes an SDK sent, seen through an httpx event hook on its own client."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []

    def hook(self, request: Any) -> None:  # the SDKs' own httpx (httpx2) request
        self.bodies.append(request.read())
        self.headers.append(dict(request.headers))

    @property
    def last(self) -> bytes:
        return self.bodies[-1]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, FakeUpstream, Path]]:
    tmp = tmp_path_factory.mktemp("native")
    with FakeUpstream() as upstream:
        base = upstream.base_url
        config = {
            "providers": {
                "oai": {"type": "openai", "base_url": base, "api_key_env": "NF_OAI_KEY"},
                "claude": {
                    "type": "anthropic",
                    "base_url": base,
                    "api_key_env": "NF_ANTHROPIC_KEY",
                },
            },
            "aliases": {
                "gpt": {"provider": "oai", "model": "gpt-up"},
                "claude-sonnet": {"provider": "claude", "model": "claude-up"},
            },
            "pricing": {
                "claude": {
                    "claude-up": {
                        "input_usd_per_mtok": 3,
                        "output_usd_per_mtok": 15,
                        "cached_input_usd_per_mtok": 0.3,
                        "cache_write_usd_per_mtok": 3.75,
                    }
                }
            },
            "rate_limit": {"requests_per_minute": 100_000},
            "log_file": str(tmp / "gateway.log"),
        }
        env = {"NF_OAI_KEY": OPENAI_KEY, "NF_ANTHROPIC_KEY": ANTHROPIC_KEY}
        with running_gateway(config, tmp, env=env) as gateway:
            yield gateway.base_url, upstream, tmp / "gateway.log"


@pytest.fixture(autouse=True)
def nothing_left_queued(world: tuple[str, FakeUpstream, Path]) -> Iterator[None]:
    """An answer a failed test did not use is not the next test's."""
    yield
    world[1].forget_behaviours()


def openai_client(gateway: str, sent: Sent | None = None) -> openai.OpenAI:
    hooks = {"request": [sent.hook]} if sent else {}
    return openai.OpenAI(
        base_url=gateway + "/v1",
        api_key="sk-client-key",
        max_retries=0,
        http_client=openai.DefaultHttpxClient(event_hooks=hooks),
    )


def anthropic_client(gateway: str, sent: Sent | None = None) -> anthropic.Anthropic:
    hooks = {"request": [sent.hook]} if sent else {}
    return anthropic.Anthropic(
        base_url=gateway,
        api_key="sk-client-key",
        max_retries=0,
        http_client=anthropic.DefaultHttpxClient(event_hooks=hooks),
    )


def with_model(raw: bytes, old: str, new: str) -> bytes:
    replaced, count = re.subn(
        rb'"model":\s*"' + old.encode() + rb'"', f'"model":"{new}"'.encode(), raw
    )
    assert count == 1
    return replaced


def log_lines(log: Path, endpoint: str) -> list[dict[str, Any]]:
    time.sleep(0.2)  # the writer flushes in the background
    return [json.loads(line) for line in log.read_text().splitlines() if endpoint in line]


# -- Anthropic to Anthropic: passed through -----------------------------------------------------

FIDELITY_CONTENT = [
    {"type": "thinking", "thinking": "Let me look it up.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA"},
    {
        "type": "server_tool_use",
        "id": "srvtoolu_01",
        "name": "web_search",
        "input": {"query": "gateway"},
    },
    {
        "type": "web_search_tool_result",
        "tool_use_id": "srvtoolu_01",
        "content": [
            {
                "type": "web_search_result",
                "url": "https://example.com",
                "title": "Example",
                "encrypted_content": "EqgfCioIARgBIiQ3",
                "page_age": None,
            }
        ],
    },
    {"type": "text", "text": "Found it. STOP"},
]
CACHE_USAGE = {
    "input_tokens": 25,
    "cache_creation_input_tokens": 100,
    "cache_read_input_tokens": 5,
    "output_tokens": 40,
}


def fidelity_request() -> dict[str, Any]:
    return {
        "model": "claude-sonnet",
        "max_tokens": 2048,
        "system": [
            {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}
        ],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
        "stop_sequences": ["STOP"],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "A doc."},
                        "cache_control": {"type": "ephemeral"},
                    },
                    {"type": "text", "text": "Search for the gateway."},
                ],
            }
        ],
    }


def test_anthropic_features_pass_through_unchanged_both_ways(world):
    gateway, upstream, log = world
    answer = anthropic_message(
        FIDELITY_CONTENT, stop_reason="stop_sequence", stop_sequence="STOP", usage=CACHE_USAGE
    )
    upstream.answer("/v1/messages", Canned(json=answer))
    sent = Sent()
    client = anthropic_client(gateway, sent)
    beta = "prompt-caching-2024-07-31,interleaved-thinking-2025-05-14"
    message = client.messages.create(**fidelity_request(), extra_headers={"anthropic-beta": beta})
    arrived = upstream.last("/v1/messages")
    assert arrived.raw == with_model(sent.last, "claude-sonnet", "claude-up")
    assert arrived.headers["anthropic-beta"] == beta
    assert arrived.headers["anthropic-version"] == sent.headers[-1]["anthropic-version"]
    assert arrived.headers["x-api-key"] == ANTHROPIC_KEY
    assert "authorization" not in arrived.headers
    assert message.model_dump(exclude_unset=True) == {**answer, "model": "claude-sonnet"}
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "STOP"
    assert message.content[0].signature == "EqQBCgIYAhIM1gbcDa9GJwZA"
    assert message.usage.cache_read_input_tokens == 5 and message.usage.input_tokens == 25
    line = log_lines(log, "/v1/messages")[-1]
    assert line["prompt_tokens"] == 130 and line["completion_tokens"] == 40
    assert line["cache_read_tokens"] == 5 and line["cache_write_tokens"] == 100
    # 25 fresh at $3, 5 read at $0.30, 100 written at $3.75, 40 out at $15 (per million)
    expected = (25 * 3 + 5 * 0.3 + 100 * 3.75 + 40 * 15) / 1_000_000
    assert line["cost_usd"] == pytest.approx(expected)


def fidelity_events() -> list[dict[str, Any]]:
    start = anthropic_message([], usage={**CACHE_USAGE, "output_tokens": 1})
    start["stop_reason"] = None
    return [
        {"type": "message_start", "message": start},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "Let me think."},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbc"},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "ping"},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "text", "text": ""},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "text_delta", "text": "Done. STOP"},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "stop_sequence", "stop_sequence": "STOP"},
            "usage": {**CACHE_USAGE},
        },
        {"type": "message_stop"},
    ]


def test_anthropic_stream_passes_through_event_for_event(world):
    gateway, upstream, _ = world
    events = fidelity_events()
    upstream.answer("/v1/messages", Canned(events=events))
    sent = Sent()
    client = anthropic_client(gateway, sent)
    with client.messages.stream(**fidelity_request()) as stream:
        received = [event.model_dump(exclude_unset=True) for event in stream._raw_stream]
    expected = [event for event in json.loads(json.dumps(events)) if event["type"] != "ping"]
    expected[0]["message"]["model"] = "claude-sonnet"
    assert received == expected  # the SDK itself drops ping events
    assert upstream.last("/v1/messages").raw == with_model(sent.last, "claude-sonnet", "claude-up")
    # the data bytes as the provider sent them, model replaced in message_start only
    upstream.answer("/v1/messages", Canned(events=events))
    raw = httpx.post(
        gateway + "/v1/messages",
        json={**fidelity_request(), "stream": True},
        headers={"anthropic-version": "2023-06-01"},
    ).text
    datas = [line[6:] for line in raw.split("\n") if line.startswith("data: ")]
    assert datas[1:] == [json.dumps(event) for event in events[1:]]


# -- OpenAI Responses ---------------------------------------------------------------------------

RESPONSE = {
    "id": "resp_upstream",
    "object": "response",
    "created_at": 1_700_000_000,
    "status": "completed",
    "error": None,
    "incomplete_details": None,
    "instructions": "Be brief.",
    "model": "gpt-up-2025",
    "output": [
        {
            "type": "message",
            "id": "msg_1",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "Hi there.", "annotations": [], "logprobs": []}
            ],
        }
    ],
    "parallel_tool_calls": True,
    "temperature": 1.0,
    "tool_choice": "auto",
    "tools": [],
    "top_p": 1.0,
    "metadata": {},
    "usage": {
        "input_tokens": 20,
        "input_tokens_details": {"cached_tokens": 4},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 23,
    },
    "a_field_from_the_future": {"kept": True},
}


def test_responses_pass_through_to_openai(world):
    gateway, upstream, _ = world
    upstream.answer("/v1/responses", Canned(json=RESPONSE))
    sent = Sent()
    client = openai_client(gateway, sent)
    raw = client.responses.with_raw_response.create(
        model="gpt", input="Hello", instructions="Be brief.", store=True,
        extra_body={"a_request_field_from_the_future": [1, 2]},
    )  # fmt: skip
    assert upstream.last("/v1/responses").raw == with_model(sent.last, "gpt", "gpt-up")
    assert upstream.last("/v1/responses").headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert json.loads(raw.content) == {**RESPONSE, "model": "gpt"}
    response = raw.parse()
    assert response.output_text == "Hi there." and response.model == "gpt"


def test_responses_stream_passes_through_to_openai(world):
    gateway, upstream, _ = world
    created = {**RESPONSE, "status": "in_progress", "output": [], "usage": None}
    events = [
        {"type": "response.created", "sequence_number": 0, "response": created},
        {
            "type": "response.output_text.delta",
            "sequence_number": 1,
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "delta": "Hi there.",
            "logprobs": [],
        },
        {"type": "response.completed", "sequence_number": 2, "response": RESPONSE},
    ]
    upstream.answer("/v1/responses", Canned(events=events))
    client = openai_client(gateway)
    stream = client.responses.create(model="gpt", input="Hello", stream=True)
    received = [event.model_dump(exclude_unset=True) for event in stream]
    assert [event["type"] for event in received] == [event["type"] for event in events]
    assert received[1]["delta"] == "Hi there."
    assert received[2]["response"]["model"] == "gpt"
    assert received[2]["response"]["usage"]["input_tokens_details"] == {"cached_tokens": 4}


def anthropic_stream(blocks: list[list[dict[str, Any]]], stop: str) -> list[dict[str, Any]]:
    start = anthropic_message([], usage={"input_tokens": 30, "output_tokens": 1})
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for index, (opening, *deltas) in enumerate(blocks):
        events.append({"type": "content_block_start", "index": index, "content_block": opening})
        events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": index})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": 9},
        }
    )
    return [*events, {"type": "message_stop"}]


WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def test_responses_with_tools_translated_for_anthropic(world):
    gateway, upstream, _ = world
    tool_use = {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "get_weather",
        "input": {"city": "Oslo"},
    }
    upstream.answer(
        "/v1/messages",
        Canned(json=anthropic_message([{"type": "text", "text": "Checking."}, tool_use],
                                      stop_reason="tool_use")),
    )  # fmt: skip
    client = openai_client(gateway)
    raw = client.responses.with_raw_response.create(
        model="claude-sonnet", input="Weather in Oslo?", tools=[WEATHER_TOOL],
        instructions="Use tools.", max_output_tokens=300,
    )  # fmt: skip
    sent = upstream.last("/v1/messages").body
    assert sent["system"] == "Use tools." and sent["max_tokens"] == 300
    assert sent["tools"] == [
        {
            "name": "get_weather",
            "input_schema": WEATHER_TOOL["parameters"],
            "description": "The weather in a city.",
        }
    ]
    body = json.loads(raw.content)
    responses_validator("Response").validate(body)
    response = raw.parse()
    call = response.output[1]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Oslo"} and call.call_id == "toolu_1"
    # the tool's output goes back as a tool_result
    upstream.answer(
        "/v1/messages", Canned(json=anthropic_message([{"type": "text", "text": "8C"}]))
    )
    follow = client.responses.create(
        model="claude-sonnet", tools=[WEATHER_TOOL],
        input=[
            {"role": "user", "content": "Weather in Oslo?"},
            {"type": "function_call", "call_id": "toolu_1", "name": "get_weather",
             "arguments": '{"city": "Oslo"}'},
            {"type": "function_call_output", "call_id": "toolu_1", "output": "8 degrees"},
        ],
    )  # fmt: skip
    assert follow.output_text == "8C"
    messages = upstream.last("/v1/messages").body["messages"]
    assert messages[1]["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}
    ]
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "8 degrees"}
    ]


def test_responses_stream_translated_for_anthropic(world):
    gateway, upstream, _ = world
    events = anthropic_stream(
        [
            [{"type": "text", "text": ""}, {"type": "text_delta", "text": "Check"},
             {"type": "text_delta", "text": "ing."}],
            [{"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
             {"type": "input_json_delta", "partial_json": '{"city": '},
             {"type": "input_json_delta", "partial_json": '"Oslo"}'}],
        ],
        "tool_use",
    )  # fmt: skip
    upstream.answer("/v1/messages", Canned(events=events))
    client = openai_client(gateway)
    with client.responses.stream(
        model="claude-sonnet", input="Weather?", tools=[WEATHER_TOOL]
    ) as stream:
        seen = [event.model_dump(exclude_unset=True, warnings=False) for event in stream]
        final = stream.get_final_response()
    validator = responses_validator("ResponseStreamEvent")
    for event in seen:
        validator.validate(event)
    kinds = [event["type"] for event in seen]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.function_call_arguments.delta" in kinds
    assert "".join(e["delta"] for e in seen if e["type"] == "response.output_text.delta") == (
        "Checking."
    )
    assert final.output_text == "Checking."
    call = final.output[1]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Oslo"}
    assert final.usage.input_tokens == 30 and final.usage.output_tokens == 9
    assert [e["sequence_number"] for e in seen] == list(range(len(seen)))


def test_responses_field_anthropic_cannot_take_is_a_400_naming_it(world):
    gateway, _, _ = world
    client = openai_client(gateway)
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="claude-sonnet", input="hi", previous_response_id="resp_1")
    assert refused.value.param == "previous_response_id"
    assert "provider 'claude' (anthropic) cannot take it" in refused.value.message


# -- count_tokens, parse, errors, models, big bodies --------------------------------------------


def test_count_tokens_asks_anthropic_or_estimates(world):
    gateway, upstream, _ = world
    client = anthropic_client(gateway)
    messages = [{"role": "user", "content": "one two three"}]
    counted = client.messages.count_tokens(model="claude-sonnet", messages=messages)
    assert counted.input_tokens == 42
    assert upstream.last("/v1/messages/count_tokens").body["model"] == "claude-up"
    estimated = client.messages.count_tokens(model="gpt", messages=messages)
    assert estimated.input_tokens == 4  # three words and the message


class City(BaseModel):
    name: str
    population: int


def test_parse_on_both_sdks_in_both_directions(world):
    gateway, upstream, _ = world
    text = '{"name": "Oslo", "population": 700000}'
    upstream.answer(
        "/v1/messages", Canned(json=anthropic_message([{"type": "text", "text": text}]))
    )
    parsed = anthropic_client(gateway).messages.parse(
        model="claude-sonnet", max_tokens=200, messages=[{"role": "user", "content": "Oslo"}],
        output_format=City,
    )  # fmt: skip
    assert parsed.parsed_output == City(name="Oslo", population=700000)
    assert upstream.last("/v1/messages").body["output_config"]["format"]["type"] == "json_schema"
    upstream.answer("/v1/chat/completions", Canned(json=completion(text, model="gpt-up")))
    across = anthropic_client(gateway).messages.parse(
        model="gpt", max_tokens=200, messages=[{"role": "user", "content": "Oslo"}],
        output_format=City,
    )  # fmt: skip
    assert across.parsed_output == City(name="Oslo", population=700000)
    sent = upstream.last("/v1/chat/completions").body
    assert sent["response_format"]["type"] == "json_schema"
    upstream.answer(
        "/v1/messages", Canned(json=anthropic_message([{"type": "text", "text": text}]))
    )
    chat = openai_client(gateway).chat.completions.parse(
        model="claude-sonnet", messages=[{"role": "user", "content": "Oslo"}], response_format=City
    )
    assert chat.choices[0].message.parsed == City(name="Oslo", population=700000)
    output = upstream.last("/v1/messages").body["output_config"]
    assert output["format"]["schema"]["properties"]["name"] == {"title": "Name", "type": "string"}


CONTEXT_ERROR = {
    "error": {
        "message": "This model's maximum context length is 128000 tokens.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}


def test_upstream_error_fields_reach_both_sdks(world):
    gateway, upstream, _ = world
    upstream.answer("/v1/chat/completions", Canned(status=400, json=CONTEXT_ERROR))
    with pytest.raises(openai.BadRequestError) as same:
        openai_client(gateway).chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "long"}]
        )
    assert same.value.code == "context_length_exceeded" and same.value.param == "messages"
    assert same.value.body == CONTEXT_ERROR["error"]
    upstream.answer("/v1/chat/completions", Canned(status=400, json=CONTEXT_ERROR))
    with pytest.raises(anthropic.BadRequestError) as across:
        anthropic_client(gateway).messages.create(
            model="gpt", max_tokens=10, messages=[{"role": "user", "content": "long"}]
        )
    assert across.value.body["error"]["type"] == "invalid_request_error"
    assert across.value.body["error"]["message"] == CONTEXT_ERROR["error"]["message"]
    with pytest.raises(openai.NotFoundError) as made:
        openai_client(gateway).chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "x"}]
        )
    assert made.value.code == "model_not_found"


def test_models_retrieve_in_each_sdks_shape(world):
    gateway, _, _ = world
    model = openai_client(gateway).models.retrieve("claude-sonnet")
    assert model.id == "claude-sonnet" and model.object == "model"
    with pytest.raises(openai.NotFoundError) as missing:
        openai_client(gateway).models.retrieve("nope")
    assert missing.value.code == "model_not_found"
    listed = anthropic_client(gateway).models.list()
    assert [m.id for m in listed.data] == ["gpt", "claude-sonnet"]
    assert all(m.type == "model" and m.display_name for m in listed.data)
    one = anthropic_client(gateway).models.retrieve("gpt")
    assert one.id == "gpt" and one.type == "model"


def test_a_5_mb_image_goes_through(world):
    gateway, upstream, _ = world
    image = base64.b64encode(b"\x89PNG" + bytes(5 * 1024 * 1024)).decode()
    url = f"data:image/png;base64,{image}"
    content = [
        {"type": "text", "text": "What is it?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    reply = openai_client(gateway).chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": content}]
    )
    assert reply.choices[0].message.content == upstream.default.text
    arrived = upstream.last("/v1/chat/completions").body
    assert arrived["messages"][0]["content"][1]["image_url"]["url"] == url


def test_stored_responses_are_the_openai_providers(world):
    gateway, upstream, _ = world
    upstream.answer("/v1/responses/resp_upstream", Canned(json=RESPONSE))
    client = openai_client(gateway)
    stored = client.responses.retrieve("resp_upstream")
    assert stored.id == "resp_upstream" and stored.output_text == "Hi there."
    arrived = upstream.last("/v1/responses/resp_upstream")
    assert arrived.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    missing = {"error": {"message": "No response found.", "type": "invalid_request_error",
                         "param": None, "code": "not_found"}}  # fmt: skip
    upstream.answer("/v1/responses/resp_gone", Canned(status=404, json=missing))
    with pytest.raises(openai.NotFoundError) as gone:
        client.responses.retrieve("resp_gone")
    assert gone.value.body == missing["error"]


def test_an_anthropic_error_event_midway_reaches_the_client_as_sent(world):
    gateway, upstream, log = world
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    events = [*fidelity_events()[:3], overloaded]
    upstream.answer("/v1/messages", Canned(events=events))
    client = anthropic_client(gateway)
    with (
        pytest.raises(anthropic.APIStatusError) as failed,
        client.messages.stream(**fidelity_request()) as stream,
    ):
        for _ in stream:
            pass
    assert failed.value.body == overloaded
    line = log_lines(log, "/v1/messages")[-1]
    assert line["outcome"] == "upstream_error"
