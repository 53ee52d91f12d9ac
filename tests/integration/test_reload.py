"""Config reload: POST /admin/reload and SIGHUP, old requests on the old config, counters kept."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import httpx
import pytest

from src.edge.app import create_app
from src.tools.keys import key_sha256, new_key
from tests.support.configs import UPSTREAM
from tests.support.gateway import GatewayProcess
from tests.support.payloads import chat_body, completion

ADMIN = "admin-Tq9xK2mW7vR4"
KEY_A, KEY_B = new_key(), new_key()


def config_data(tmp_path: Path, **overrides):
    data = {
        "providers": {
            "primary": {"base_url": UPSTREAM, "api_key_env": "TEST_PRIMARY_KEY", "timeout_s": 5},
        },
        "aliases": {"default-chat": {"provider": "primary", "model": "up-model-a"}},
        "rate_limit": {"requests_per_minute": 1000},
        "log_file": str(tmp_path / "logs" / "gateway.log"),
        "clients": {"team-a": {"key_sha256": key_sha256(KEY_A)}},
    }
    data.update(overrides)
    return data


def write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.fixture
async def served(upstream, provider_key, tmp_path, monkeypatch):
    """``await served(data)`` → an httpx client on an app that reloads from a config file."""
    monkeypatch.setenv("GATEWAY_ADMIN_KEY", ADMIN)
    opened = []

    async def serve(data) -> httpx.AsyncClient:
        path = write(tmp_path / "gateway.json", data)
        app = create_app(
            config_path=path, transport=lambda spec: httpx.MockTransport(upstream.async_handler)
        )
        lifespan = app.lifespan()
        await lifespan.__aenter__()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw.test"
        )
        client.config_path = path  # type: ignore[attr-defined]
        opened.append((lifespan, client))
        return client

    yield serve
    for lifespan, client in reversed(opened):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


def auth(key=KEY_A):
    return {"Authorization": f"Bearer {key}"}


ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}


async def test_reload_needs_the_admin_key(served, tmp_path, monkeypatch):
    client = await served(config_data(tmp_path))
    assert (await client.post("/admin/reload")).status_code == 401
    wrong = await client.post("/admin/reload", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
    client_key = await client.post("/admin/reload", headers=auth())
    assert client_key.status_code == 401
    # The key is read when the guard is built (start-up, reload): a gateway started without it
    # has the admin API disabled.
    monkeypatch.delenv("GATEWAY_ADMIN_KEY")
    unkeyed = await served(config_data(tmp_path))
    disabled = await unkeyed.post("/admin/reload", headers=ADMIN_AUTH)
    assert (
        disabled.status_code == 403 and "GATEWAY_ADMIN_KEY" in disabled.json()["error"]["message"]
    )


async def test_the_admin_key_variable_is_named_in_config(served, tmp_path, monkeypatch):
    monkeypatch.setenv("OPS_KEY", "ops-Xc8vB3nM1qL6")
    client = await served(config_data(tmp_path, admin_key_env="OPS_KEY"))
    assert (await client.post("/admin/reload", headers=ADMIN_AUTH)).status_code == 401
    ok = await client.post("/admin/reload", headers={"Authorization": "Bearer ops-Xc8vB3nM1qL6"})
    assert ok.status_code == 200


async def test_reload_applies_a_new_client(served, upstream, tmp_path):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    client = await served(config_data(tmp_path))
    assert (
        await client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_B))
    ).status_code == 401
    data = config_data(tmp_path)
    data["clients"]["team-b"] = {"key_sha256": key_sha256(KEY_B)}
    write(client.config_path, data)
    response = await client.post("/admin/reload", headers=ADMIN_AUTH)
    assert response.status_code == 200
    assert response.json()["status"] == "reloaded" and response.json()["clients"] == 2
    assert (
        await client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_B))
    ).status_code == 200


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not valid JSON"),
        ({"aliases": {}}, "providers"),
        ("policies", r"policies\.0\.hook: cannot import"),
        ("log_file", "log_file: cannot change on reload"),
    ],
)
async def test_an_invalid_config_is_refused_and_the_old_one_stays(
    served, upstream, tmp_path, content, reason
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    client = await served(config_data(tmp_path))
    if content == "policies":
        content = config_data(
            tmp_path, policies=[{"name": "h", "action": "hook", "hook": "nowhere_mod:f"}]
        )
    elif content == "log_file":
        content = config_data(tmp_path, log_file=str(tmp_path / "elsewhere.log"))
    write(client.config_path, content)
    response = await client.post("/admin/reload", headers=ADMIN_AUTH)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_config"
    assert error["message"].startswith("Reload refused, the running config stays: config ")
    import re

    assert re.search(reason, error["message"])
    assert (
        await client.post("/v1/chat/completions", json=chat_body(), headers=auth())
    ).status_code == 200


async def test_rate_limits_and_spend_carry_over_a_reload(served, upstream, tmp_path):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    # completion() costs 11 + 5 tokens at 1 USD per token: 16 USD a call.
    data = config_data(
        tmp_path,
        pricing={
            "primary": {"up-model-a": {"input_usd_per_mtok": 1e6, "output_usd_per_mtok": 1e6}}
        },
    )
    data["clients"]["team-a"].update(
        rate_limit={"requests_per_minute": 3}, budget={"usd_per_day": 100}
    )
    data["clients"]["team-b"] = {"key_sha256": key_sha256(KEY_B), "budget": {"usd_per_day": 20}}
    client = await served(data)
    for _ in range(2):
        assert (
            await client.post("/v1/chat/completions", json=chat_body(), headers=auth())
        ).status_code == 200
    assert (
        await client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_B))
    ).status_code == 200
    data["aliases"]["other"] = {"provider": "primary", "model": "up-model-a"}
    write(client.config_path, data)
    assert (await client.post("/admin/reload", headers=ADMIN_AUTH)).status_code == 200
    third = await client.post("/v1/chat/completions", json=chat_body(), headers=auth())
    assert third.status_code == 200 and third.headers["x-ratelimit-remaining-requests"] == "0"
    limited = await client.post("/v1/chat/completions", json=chat_body(), headers=auth())
    assert limited.json()["error"]["type"] == "rate_limit_exceeded"
    assert (
        await client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_B))
    ).status_code == 200
    over = await client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_B))
    assert over.json()["error"]["type"] == "budget_exceeded"


async def test_reload_under_load_loses_no_request_and_old_ones_finish_on_the_old_config(
    served, upstream, tmp_path
):
    async def slow(request):
        await asyncio.sleep(0.03)
        return httpx.Response(200, json=completion(model=json.loads(request.content)["model"]))

    upstream.post(f"{UPSTREAM}/chat/completions").mock(side_effect=slow)
    client = await served(config_data(tmp_path))
    versions = [config_data(tmp_path), config_data(tmp_path)]
    versions[1]["aliases"]["default-chat"]["model"] = "up-model-new"
    stop = asyncio.Event()

    async def load():
        statuses = []
        while not stop.is_set():
            response = await client.post("/v1/chat/completions", json=chat_body(), headers=auth())
            statuses.append(response.status_code)
        return statuses

    async def reload_repeatedly():
        for i in range(6):
            await asyncio.sleep(0.05)
            write(client.config_path, versions[i % 2])
            assert (await client.post("/admin/reload", headers=ADMIN_AUTH)).status_code == 200
        stop.set()

    workers = [asyncio.create_task(load()) for _ in range(20)]
    await reload_repeatedly()
    results = await asyncio.gather(*workers)
    statuses = [s for r in results for s in r]
    assert len(statuses) >= 100 and set(statuses) == {200}
    sent_models = {json.loads(call.request.content)["model"] for call in upstream.calls}
    assert sent_models == {"up-model-a", "up-model-new"}


async def test_an_in_flight_stream_finishes_on_the_old_config(served, upstream, tmp_path):
    release = asyncio.Event()

    async def held_stream(request):
        await release.wait()
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                 "choices": [{"index": 0, "delta": {"content": "old"}, "finish_reason": "stop"}]}  # fmt: skip
        return httpx.Response(
            200, text=f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n",
            headers={"content-type": "text/event-stream"},
        )  # fmt: skip

    upstream.post(f"{UPSTREAM}/chat/completions").mock(side_effect=held_stream)
    client = await served(config_data(tmp_path))
    pending = asyncio.create_task(
        client.post("/v1/chat/completions", json=chat_body(stream=True), headers=auth())
    )
    await asyncio.sleep(0.05)
    write(
        client.config_path,
        config_data(tmp_path, clients={"team-b": {"key_sha256": key_sha256(KEY_B)}}),
    )
    assert (await client.post("/admin/reload", headers=ADMIN_AUTH)).status_code == 200
    assert (
        await client.post("/v1/chat/completions", json=chat_body(), headers=auth())
    ).status_code == 401
    release.set()
    response = await pending
    assert response.status_code == 200 and '"old"' in response.text and "[DONE]" in response.text


@pytest.mark.slow
def test_sighup_reloads_a_real_gateway_under_load(tmp_path):
    """A gateway process: SIGHUP during a stream of requests; every request answered."""
    data = {
        "providers": {
            "stubbed": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "GW_TEST_NEVER_SET"}
        },
        "aliases": {"default-chat": {"provider": "stubbed", "model": "m"}},
        "rate_limit": {"requests_per_minute": 100_000},
        "log_file": str(tmp_path / "logs" / "gateway.log"),
    }
    path = write(tmp_path / "gateway.json", data)
    gateway = GatewayProcess(path, tmp_path, env={"GW_TEST_NEVER_SET": ""}).start()
    try:
        statuses = asyncio.run(_load_with_sighups(gateway, path, data))
        assert len(statuses) >= 50 and set(statuses) == {200}
        models = httpx.get(gateway.base_url + "/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["default-chat", "extra-2"]
        write(path, "{broken")
        gateway.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reload refused" not in gateway.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "reload refused, the running config stays: config" in gateway.stderr()
        body = {"client_id": "c", **chat_body()}
        assert httpx.post(gateway.base_url + "/v1/chat", json=body).status_code == 200
    finally:
        gateway.stop()
    assert gateway.stderr().count("config reloaded from") == 2


async def _load_with_sighups(gateway: GatewayProcess, path: Path, data) -> list[int]:
    statuses: list[int] = []
    stop = asyncio.Event()
    body = {"client_id": "load", **chat_body()}

    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as http:

        async def load():
            while not stop.is_set():
                statuses.append((await http.post("/v1/chat", json=body)).status_code)

        workers = [asyncio.create_task(load()) for _ in range(8)]
        for version in (1, 2):
            await asyncio.sleep(0.3)
            write(
                path,
                {
                    **data,
                    "aliases": {
                        **data["aliases"],
                        f"extra-{version}": data["aliases"]["default-chat"],
                    },
                },
            )
            gateway.signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*workers)
    return statuses
