"""Stub mode answers every endpoint in its own dialect: the stub speaks chat, the others reach it
through their translators (``responses_chat``, ``anthropic_openai``)."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from src.providers import STUB_TEXT
from tests.support.configs import stub_config
from tests.support.gateway import running_gateway
from tests.support.schema import responses_validator


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("stub")
    with running_gateway(stub_config(tmp), tmp) as started:
        yield started.base_url


def test_responses_in_stub_mode_plain_and_streamed(gateway):
    client = openai.OpenAI(base_url=gateway + "/v1", api_key="x", max_retries=0)
    raw = client.responses.with_raw_response.create(model="default-chat", input="Hello there")
    responses_validator("Response").validate(json.loads(raw.content))
    response = raw.parse()
    assert response.output_text == STUB_TEXT and response.model == "default-chat"
    assert response.usage is not None and response.usage.input_tokens == 3
    events = list(client.responses.create(model="default-chat", input="Hello", stream=True))
    assert events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == STUB_TEXT


def test_messages_and_count_tokens_in_stub_mode(gateway):
    client = anthropic.Anthropic(base_url=gateway, api_key="x", max_retries=0)
    messages = [{"role": "user", "content": "Hello there"}]
    message = client.messages.create(model="default-chat", max_tokens=50, messages=messages)
    assert message.content[0].text == STUB_TEXT and message.model == "default-chat"
    with client.messages.stream(model="default-chat", max_tokens=50, messages=messages) as s:
        assert s.get_final_text() == STUB_TEXT
    assert client.messages.count_tokens(model="default-chat", messages=messages).input_tokens == 3


def test_the_beta_messages_route_and_model_discovery_in_stub_mode(gateway):
    client = anthropic.Anthropic(base_url=gateway, api_key="x", max_retries=0)
    messages = [{"role": "user", "content": "Hello"}]
    beta = client.beta.messages.create(
        model="default-chat", max_tokens=50, messages=messages, betas=["context-1m-2025-08-07"]
    )
    assert beta.content[0].text == STUB_TEXT
    assert [model.id for model in client.models.list()] == ["default-chat"]
