"""Malformed fields: every position of a valid body given a wrong value, never a 5xx.

Hypothesis takes a rich valid body of each dialect (Anthropic's Messages, OpenAI's
chat completions) and changes one position: another JSON value of any type, the
key removed, or a key added. The gateway answers below 500, every refusal in the
route's envelope. Chat bodies are also sent to an Anthropic-backed alias, through
the chat-to-Anthropic translation; the fake upstream speaks OpenAI only, so a
translated body that reaches it ends in the gateway's 502 ``upstream_error``,
which is allowed there, and nothing else of 5xx is.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.hostile.harness import Exposure, HostileGateway, is_envelope, scaled

MESSAGES_BODY: dict[str, Any] = {
    "model": "chat",
    "max_tokens": 16,
    "system": [{"type": "text", "text": "be brief"}],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hello"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "aGk="},
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "calling"},
                {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": [{"type": "text", "text": "r"}],
                    "is_error": False,
                },
                {"type": "text", "text": "go on"},
            ],
        },
    ],
    "tools": [
        {"name": "f", "description": "d", "input_schema": {"type": "object", "properties": {}}}
    ],
    "tool_choice": {"type": "auto"},
    "metadata": {"user_id": "u"},
    "stop_sequences": ["END"],
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 5,
    "stream": False,
}

CHAT_BODY: dict[str, Any] = {
    "model": "chat",
    "messages": [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk="}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "f", "arguments": '{"a": 1}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "r"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {"name": "f", "description": "d", "parameters": {"type": "object"}},
        }
    ],
    "tool_choice": "auto",
    "stop": ["END"],
    "temperature": 0.5,
    "top_p": 0.9,
    "max_tokens": 16,
    "n": 1,
    "user": "u",
    "stream": False,
}

# The bodies of the issue, by hand: each a 500 once.
REPORTED = [
    {"tool_choice": "auto"},
    {"tools": 5},
    {"tools": [5]},
    {"tools": [None]},
    {"system": [{"type": "text", "text": 5}]},
    *(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t", "content": content}],
                }
            ]
        }
        for content in (5, [5], {"a": 1})
    ),
    {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "text", "text": None}]},
        ]
    },
]

Path = tuple[str | int, ...]


def _paths(value: Any, at: Path = ()) -> Iterator[Path]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*at, key)
            yield from _paths(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*at, index)
            yield from _paths(item, (*at, index))


def _changed(body: dict[str, Any], path: Path, change: tuple[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    parent: Any = changed
    for part in path[:-1]:
        parent = parent[part]
    kind, value = change
    if kind == "delete":
        del parent[path[-1]]
    elif kind == "add" and isinstance(parent[path[-1]], dict):
        parent[path[-1]]["unexpected"] = value
    else:
        parent[path[-1]] = value
    return changed


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["type", "text", "a", "name", ""]), children, max_size=3)
    ),
    max_leaves=6,
)
CHANGES = st.one_of(
    st.tuples(st.just("set"), JSON_VALUES),
    st.tuples(st.just("delete"), st.none()),
    st.tuples(st.just("add"), JSON_VALUES),
)


class Seen:
    def __init__(self) -> None:
        self.cases = 0
        self.refused = 0
        self.broken: list[str] = []

    def check(self, label: str, path: str, response: httpx.Response, upstream_5xx_ok: bool) -> None:
        self.cases += 1
        status = response.status_code
        if status >= 400:
            self.refused += 1
            if not is_envelope(status, response.content, path):
                self.broken.append(f"{label}: {status} outside the envelope {response.text[:200]}")
                return
        if status >= 500:
            kind = response.json()["error"]["type"]
            if not (upstream_5xx_ok and status == 502 and kind == "upstream_error"):
                self.broken.append(f"{label}: {status} {response.text[:300]}")


@pytest.fixture(scope="module")
def seen(figures: Any) -> Iterator[Seen]:
    found = Seen()
    yield found
    figures.record(
        "malformed_fields",
        cases=found.cases,
        refused_4xx=found.refused,
        answered_5xx=len(found.broken),
    )


def _settings() -> Any:
    return settings(
        max_examples=scaled(150),
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def test_the_reported_messages_bodies_are_400_in_anthropics_envelope(
    gateway: HostileGateway, exposure: Exposure, seen: Seen
) -> None:
    with httpx.Client(base_url=gateway.base_url, timeout=15) as client:
        for change in REPORTED:
            response = client.post("/v1/messages", json={**MESSAGES_BODY, **change})
            exposure.answer(response)
            seen.check(repr(change), "/v1/messages", response, upstream_5xx_ok=False)
            assert response.status_code == 400, (change, response.text)
            error = response.json()
            assert error["type"] == "error", error
            assert error["error"]["type"] == "invalid_request_error", error


def test_a_valid_body_of_each_dialect_is_answered(gateway: HostileGateway) -> None:
    with httpx.Client(base_url=gateway.base_url, timeout=15) as client:
        assert client.post("/v1/messages", json=MESSAGES_BODY).status_code == 200
        assert client.post("/v1/chat/completions", json=CHAT_BODY).status_code == 200


def test_any_wrong_value_in_a_messages_body_is_below_500(
    gateway: HostileGateway, exposure: Exposure, seen: Seen
) -> None:
    paths = list(_paths(MESSAGES_BODY))
    before = len(seen.broken)
    with httpx.Client(base_url=gateway.base_url, timeout=15) as client:

        @_settings()
        @given(path=st.sampled_from(paths), change=CHANGES)
        def one(path: Path, change: tuple[str, Any]) -> None:
            body = _changed(MESSAGES_BODY, path, change)
            response = client.post("/v1/messages", json=body)
            exposure.answer(response)
            seen.check(f"{path} {change!r:.100}", "/v1/messages", response, False)

        one()
    assert not seen.broken[before:], seen.broken[before : before + 10]


@pytest.mark.parametrize("model", ["chat", "anth"])
def test_any_wrong_value_in_a_chat_body_is_below_500(
    gateway: HostileGateway, exposure: Exposure, seen: Seen, model: str
) -> None:
    base = {**CHAT_BODY, "model": model}
    paths = [path for path in _paths(base) if path != ("model",)]
    before = len(seen.broken)
    with httpx.Client(base_url=gateway.base_url, timeout=15) as client:

        @_settings()
        @given(path=st.sampled_from(paths), change=CHANGES)
        def one(path: Path, change: tuple[str, Any]) -> None:
            body = _changed(base, path, change)
            response = client.post("/v1/chat/completions", json=body)
            exposure.answer(response)
            seen.check(f"{model} {path} {change!r:.100}", "/v1/chat", response, model == "anth")

        one()
    assert not seen.broken[before:], seen.broken[before : before + 10]
