"""The state choices in the config: ``state.redis_mode``, ``state.sentinel_service`` and each
rate limit's ``algorithm``; and the seed's rate-limit example under either algorithm and backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from src.config import ConfigError, StateConfig, load_config, parse_config
from src.tools.keys import key_sha256, new_key
from tests.support.configs import make_config


def test_redis_mode_defaults_to_standalone_and_algorithm_to_the_sliding_log(tmp_path):
    config = make_config(tmp_path)
    assert (config.state.redis_mode, config.state.sentinel_service) == ("standalone", None)
    assert config.rate_limit.algorithm == "sliding_log"


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"redis_mode": "replicated"}, "state.redis_mode"),
        ({"redis_mode": "sentinel"}, 'sentinel_service: required with redis_mode "sentinel"'),
        ({"sentinel_service": "primary"}, 'sentinel_service: only with redis_mode "sentinel"'),
        ({"redis_mode": "sentinel", "sentinel_service": ""}, "state.sentinel_service"),
        ({"redis_mode": "cluster", "redis_url": "unix:///tmp/r.sock"}, "a unix socket"),
        (
            {"redis_mode": "sentinel", "sentinel_service": "s", "redis_url": "redis://h:1/x"},
            "the database must be a number",
        ),
    ],
)
def test_a_bad_redis_mode_setting_names_its_field(tmp_path, state, message):
    data = make_config(tmp_path).model_dump()
    data["state"] = {"backend": "redis", **state}
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert message in str(caught.value)


def test_sentinel_mode_takes_the_service_name():
    state = StateConfig(
        backend="redis",
        redis_mode="sentinel",
        redis_url="redis://10.0.0.1:26379,10.0.0.2:26379/0",
        sentinel_service="gateway-primary",
    )
    assert state.sentinel_service == "gateway-primary"


def test_an_unknown_algorithm_is_refused_where_it_is_set(tmp_path):
    data = make_config(tmp_path).model_dump()
    data["rate_limit"]["algorithm"] = "token_bucket"
    with pytest.raises(ConfigError, match=r"rate_limit\.algorithm"):
        parse_config(data)
    data["rate_limit"]["algorithm"] = "gcra"
    data["clients"] = {
        "acme": {
            "key_sha256": key_sha256(new_key()),
            "rate_limit": {"requests_per_minute": 5, "algorithm": "fixed_window"},
        }
    }
    with pytest.raises(ConfigError, match=r"clients\.acme\.rate_limit\.algorithm"):
        parse_config(data)


async def test_a_clients_own_algorithm_applies_to_it_alone(
    gateway_client, tmp_path, monkeypatch, state
):
    monkeypatch.delenv("TEST_PRIMARY_KEY", raising=False)  # stub answers
    keys = {"log": new_key(), "cells": new_key()}
    config = make_config(
        tmp_path,
        rate_limit={"requests_per_minute": 3, "algorithm": "sliding_log"},
        clients={
            "log": {"key_sha256": key_sha256(keys["log"])},
            "cells": {
                "key_sha256": key_sha256(keys["cells"]),
                "rate_limit": {"requests_per_minute": 3, "algorithm": "gcra"},
            },
        },
        state=state,
    )
    client = await gateway_client(config)
    retry_after = {}
    for name, key in keys.items():
        headers = {"Authorization": f"Bearer {key}"}
        body = {"model": "default-chat", "messages": [{"role": "user", "content": "hi"}]}
        statuses = []
        for _ in range(4):
            response = await client.post("/v1/chat/completions", json=body, headers=headers)
            statuses.append(response.status_code)
        assert statuses == [200, 200, 200, 429]
        retry_after[name] = int(response.headers["retry-after"])
    assert retry_after["log"] == 60  # the oldest of three admissions leaves the window
    assert retry_after["cells"] == 20  # one emission interval


@pytest.fixture
def example_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    data = load_config("config/example.config.json").model_dump()
    data["log_file"] = str(tmp_path / "gateway.log")
    return data


@pytest.mark.parametrize("algorithm", ["sliding_log", "gcra"])
async def test_the_seeds_twenty_first_request_gets_the_seed_error_with_either_algorithm(
    gateway_client, example_config, state, algorithm
):
    example_config["rate_limit"]["algorithm"] = algorithm
    example_config["state"] = state
    client = await gateway_client(parse_config(example_config))
    body = {
        "client_id": "test",
        "model": "default-chat",
        "messages": [{"role": "user", "content": "hi"}],
    }
    for _ in range(20):
        assert (await client.post("/v1/chat", json=body)).status_code == 200
    response = await client.post("/v1/chat", json=body)
    assert response.status_code == 429
    assert response.content == (
        b'{"error":{"type":"rate_limit_exceeded",'
        b'"message":"Request rate exceeded for client_id test (20 req/min)."}}'
    )
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
