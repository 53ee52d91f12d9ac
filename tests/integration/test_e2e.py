"""End to end: the gateway process, the official ``openai`` SDK, the fake upstream on loopback.

One gateway process (``python -m src serve``) serves the whole module; its
config names a provider whose ``base_url`` is the fake upstream and whose key
variable holds a canary key, so the tests can prove where that key goes (to
the upstream, as ``Authorization``) and where it never goes (the client, the
log, the process's output).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.gateway import GatewayProcess
from tests.support.loopback import wait_until
from tests.support.upstream import Behaviour, FakeUpstream, Received

pytestmark = pytest.mark.slow

CLIENT_KEY = "client-key"
CANARY = "sk-e2e-canary-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def real_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_behaviour(real_upstream: FakeUpstream) -> None:
    real_upstream.forget_behaviours()


@pytest.fixture(scope="module")
def gateway(
    real_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    home = tmp_path_factory.mktemp("e2e")
    config = {
        "providers": {
            "up": {
                "type": "openai",
                "base_url": real_upstream.base_url,
                "api_key_env": "E2E_KEY",
                "timeout_s": 5,
            }
        },
        "aliases": {"default-chat": {"provider": "up", "model": "real-model"}},
        "rate_limit": {"requests_per_minute": 1000, "tokens_per_minute": 1_000_000},
        "log_file": str(home / "gw.log"),
    }
    with GatewayProcess(config, home, env={"E2E_KEY": CANARY}, log_level="info") as process:
        yield process


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    sdk = openai.OpenAI(
        base_url=f"{gateway.base_url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10
    )
    yield sdk
    sdk.close()


def messages(marker: str) -> list[dict[str, str]]:
    """A conversation tagged with ``marker``, to find this test's request at the upstream."""
    return [{"role": "user", "content": f"Say hello ({marker})."}]


def received(upstream: FakeUpstream, marker: str) -> Received:
    found = [r for r in upstream.requests if f"({marker})" in r.raw.decode()]
    assert len(found) == 1, f"expected one upstream request tagged {marker}, got {len(found)}"
    return found[0]


# -- tests ------------------------------------------------------------------------------


def test_sdk_completion_is_answered_under_the_alias_with_the_provider_key_sent_upstream(
    client, real_upstream
):
    answer = client.chat.completions.create(
        model="default-chat",
        messages=messages("plain"),
        temperature=0.3,
        seed=7,
        response_format={"type": "json_object"},
    )
    assert answer.model == "default-chat"
    assert answer.choices[0].message.content == Behaviour().text
    assert answer.usage is not None and answer.usage.total_tokens == 51

    sent = received(real_upstream, "plain")
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {CANARY}"
    assert all(CLIENT_KEY not in value for value in sent.headers.values())
    assert CLIENT_KEY.encode() not in sent.raw
    assert sent.body["model"] == "real-model"
    assert sent.body["messages"] == messages("plain")
    # Fields the gateway does not use pass through unchanged.
    assert sent.body["temperature"] == 0.3
    assert sent.body["seed"] == 7
    assert sent.body["response_format"] == {"type": "json_object"}


def test_sdk_models_list_names_the_aliases(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["default-chat"]
    assert all(m.object == "model" for m in models.data)


def test_sdk_unknown_alias_raises_not_found_with_type_model_not_found(client, real_upstream):
    before = len(real_upstream.requests)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=messages("unknown"))
    assert caught.value.status_code == 404
    assert caught.value.type == "model_not_found"
    assert caught.value.param == "model"
    assert len(real_upstream.requests) == before  # never reached the upstream


def test_sdk_stream_without_include_usage_reassembles_the_text_and_has_no_usage(
    client, real_upstream
):
    real_upstream.behave(
        "real-model", pieces=("Streaming", " through", " the", " gateway", " works.")
    )
    stream = client.chat.completions.create(
        model="default-chat", messages=messages("stream-plain"), stream=True
    )
    chunks = list(stream)
    assert len(chunks) >= 3
    assert all(chunk.model == "default-chat" for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)  # no usage-only chunk
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text == "Streaming through the gateway works."
    assert chunks[-1].choices[0].finish_reason == "stop"
    # The gateway asked the upstream for usage anyway, for its own accounting.
    assert received(real_upstream, "stream-plain").body["stream_options"] == {"include_usage": True}


def test_sdk_stream_with_include_usage_ends_with_the_usage_chunk(client, real_upstream):
    stream = client.chat.completions.create(
        model="default-chat",
        messages=messages("stream-usage"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    *content, last = chunks
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (
        9,
        42,
        51,
    )
    assert all(chunk.usage is None for chunk in content)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in content)
    assert text == Behaviour().text
    assert all(chunk.model == "default-chat" for chunk in chunks)


def test_log_has_one_json_line_per_request_and_never_the_canary_key(client, gateway):
    ids = []
    raw = client.chat.completions.with_raw_response.create(
        model="default-chat", messages=messages("log-1")
    )
    raw.parse()
    ids.append(raw.headers["x-request-id"])
    raw = client.chat.completions.with_raw_response.create(
        model="default-chat", messages=messages("log-2"), stream=True
    )
    list(raw.parse())
    ids.append(raw.headers["x-request-id"])
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="missing", messages=messages("log-3"))
    ids.append(caught.value.response.headers["x-request-id"])

    def all_logged() -> list[dict[str, Any]] | None:
        lines = [line for line in gateway.log_lines() if line["request_id"] in ids]
        return lines if {line["request_id"] for line in lines} == set(ids) else None

    mine = wait_until(all_logged, 5)
    assert mine, "not every request was logged"
    assert sorted(line["request_id"] for line in mine) == sorted(ids)  # exactly one line each
    by_id = {line["request_id"]: line for line in mine}
    assert by_id[ids[0]]["stream"] is False and by_id[ids[0]]["outcome"] == "completed"
    assert by_id[ids[1]]["stream"] is True and by_id[ids[1]]["outcome"] == "completed"
    assert by_id[ids[2]]["status"] == 404 and by_id[ids[2]]["outcome"] == "refused"

    every_line = gateway.log_lines()  # every line parses as one JSON object
    assert len({line["request_id"] for line in every_line}) == len(
        every_line
    )  # one line per request
    log_text = gateway.log_file.read_text()
    assert CANARY not in log_text
    assert CANARY[-12:] not in log_text
    assert CLIENT_KEY not in log_text
    assert CANARY not in gateway.stdout() + gateway.stderr()
