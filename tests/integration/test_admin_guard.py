"""The one admin guard: the same key source, credential forms and compare on every operator route,
rebuilt when the config is reloaded."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

from src.edge.app import create_app
from tests.support.configs import UPSTREAM
from tests.support.payloads import chat_body

KEY_ONE, KEY_TWO = "admin-one-Zp4qW8", "admin-two-Lm3vT6"


def basic(password: str) -> dict[str, str]:
    token = base64.b64encode(f"ops:{password}".encode()).decode()
    return {"authorization": f"Basic {token}"}


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def config_data(tmp_path: Path, **overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "providers": {"primary": {"base_url": UPSTREAM, "api_key_env": "TEST_PRIMARY_KEY"}},
        "aliases": {"default-chat": {"provider": "primary", "model": "up-model-a"}},
        "rate_limit": {"requests_per_minute": 1000},
        "log_file": str(tmp_path / "logs" / "gateway.log"),
    }
    data.update(overrides)
    return data


@pytest.fixture
async def gateway(upstream, tmp_path, monkeypatch):
    """``await gateway(data)`` → (client, config path) on an app that reloads from that file."""
    monkeypatch.setenv("ADMIN_ONE", KEY_ONE)
    monkeypatch.setenv("ADMIN_TWO", KEY_TWO)
    opened = []

    async def serve(data: dict[str, object]) -> tuple[httpx.AsyncClient, Path]:
        path = tmp_path / "gateway.json"
        path.write_text(json.dumps(data))
        app = create_app(
            config_path=path, transport=lambda spec: httpx.MockTransport(upstream.async_handler)
        )
        lifespan = app.lifespan()
        await lifespan.__aenter__()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
        opened.append((lifespan, client))
        return client, path

    yield serve
    for lifespan, client in reversed(opened):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


async def test_every_operator_route_takes_the_key_as_bearer_or_basic(gateway, tmp_path):
    client, _ = await gateway(config_data(tmp_path, admin_key_env="ADMIN_ONE"))
    for headers in (bearer(KEY_ONE), basic(KEY_ONE)):
        assert (await client.get("/metrics", headers=headers)).status_code == 200
        assert (await client.get("/dashboard/data", headers=headers)).status_code == 200
        assert (await client.post("/admin/reload", headers=headers)).status_code == 200
        explained = await client.post("/v1/explain", json=chat_body(), headers=headers)
        assert explained.json()["viewer"] == "admin"
    for headers in (bearer(KEY_TWO), basic(KEY_TWO), {}):
        assert (await client.get("/metrics", headers=headers)).status_code == 401
        assert (await client.post("/admin/reload", headers=headers)).status_code == 401
        explained = await client.post("/v1/explain", json=chat_body(), headers=headers)
        assert explained.json()["viewer"] == "client"


async def test_without_a_key_views_are_open_and_control_is_disabled(gateway, tmp_path):
    client, _ = await gateway(config_data(tmp_path, admin_key_env="ADMIN_UNSET_VARIABLE"))
    assert (await client.get("/metrics")).status_code == 200
    refused = await client.post("/admin/reload", headers=bearer("anything"))
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_denied"


async def test_a_reload_rebuilds_the_guard_from_the_new_config(gateway, tmp_path):
    client, path = await gateway(config_data(tmp_path, admin_key_env="ADMIN_ONE"))
    path.write_text(json.dumps(config_data(tmp_path, admin_key_env="ADMIN_TWO")))
    assert (await client.post("/admin/reload", headers=bearer(KEY_ONE))).status_code == 200
    assert (await client.get("/metrics", headers=bearer(KEY_ONE))).status_code == 401
    assert (await client.get("/metrics", headers=bearer(KEY_TWO))).status_code == 200
    assert (await client.post("/admin/reload", headers=basic(KEY_TWO))).status_code == 200
