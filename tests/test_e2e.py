"""End to end: the real gateway process under uvicorn, the official ``openai`` SDK, a real upstream.

One gateway subprocess (``python -m uvicorn src.app:app``) serves the whole
module; its config names a provider whose ``base_url`` is the in-process fake
upstream and whose key variable holds a canary key, so the tests can prove where
that key goes (to the upstream, as ``Authorization``) and where it never goes
(the client, the log).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.gateway_process import stop_process
from tests.upstream_server import Behaviour, FakeUpstream, Received, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
CLIENT_KEY = "client-key"
CANARY = "sk-e2e-canary-" + secrets.token_hex(12)


@dataclass
class Gateway:
    port: int
    log_file: Path
    output: Path  # the process's stdout and stderr

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_lines(self) -> list[dict[str, Any]]:
        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_text().splitlines()]


@pytest.fixture(scope="module")
def real_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_behaviour(real_upstream: FakeUpstream) -> None:
    real_upstream.default = Behaviour()
    real_upstream.behaviours.clear()


@pytest.fixture(scope="module")
def gateway(
    real_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
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
    config_path = home / "config.json"
    config_path.write_text(json.dumps(config))
    port = free_port()
    env = {**os.environ, "GATEWAY_CONFIG": str(config_path), "E2E_KEY": CANARY}
    output = home / "gateway.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "src.app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    gw = Gateway(port, home / "gw.log", output)
    try:
        _wait_healthy(gw, process)
        yield gw
    finally:
        stop_process(process)


def _wait_healthy(gw: Gateway, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the gateway exited ({process.returncode}):\n{gw.output.read_text()}")
        try:
            if httpx.get(f"{gw.base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    pytest.fail(f"the gateway never answered /healthz:\n{gw.output.read_text()}")


@pytest.fixture
def client(gateway: Gateway) -> Iterator[openai.OpenAI]:
    sdk = openai.OpenAI(
        base_url=f"{gateway.base_url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10
    )
    yield sdk
    sdk.close()


def messages(marker: str) -> list[dict[str, str]]:
    """A conversation tagged with ``marker``, to find this test's request at the upstream."""
    return [{"role": "user", "content": f"Say hello ({marker})."}]


def received(upstream: FakeUpstream, marker: str) -> Received:
    found = [r for r in upstream.requests if marker in r.raw_body.decode()]
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
    assert CLIENT_KEY.encode() not in sent.raw_body
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
    assert CANARY not in gateway.output.read_text()
