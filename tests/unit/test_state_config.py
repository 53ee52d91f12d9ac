"""The state settings: memory by default, the Redis settings documented and checked, and the
worker count read from the command line."""

from __future__ import annotations

import pytest

from src.config import ConfigError, StateConfig, parse_config
from src.state.backend import worker_count
from tests.support.configs import make_config


def test_state_defaults_to_memory_with_documented_redis_settings(tmp_path):
    state = make_config(tmp_path).state
    assert state == StateConfig()
    assert (state.backend, state.redis_url, state.key_prefix, state.on_error) == (
        "memory", "redis://127.0.0.1:6379/0", "gw:", "fail_open",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("state", "field"),
    [
        ({"backend": "mongo"}, "state.backend"),
        ({"on_error": "ignore"}, "state.on_error"),
        ({"redis_url": "http://127.0.0.1:6379"}, "state.redis_url"),
        ({"key_prefix": ""}, "state.key_prefix"),
        ({"timeout_s": 0}, "state.timeout_s"),
        ({"redis": "redis://x"}, "state.redis"),
    ],
)
def test_a_bad_state_setting_names_its_field(tmp_path, state, field):
    data = make_config(tmp_path).model_dump()
    data["state"] = state
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert field in str(caught.value)


@pytest.mark.parametrize(
    ("argv", "web_concurrency", "workers"),
    [
        (["uvicorn", "src.app:app"], None, 1),
        (["uvicorn", "src.app:app", "--workers", "4"], None, 4),
        (["uvicorn", "src.app:app", "--workers=2"], None, 2),
        (["uvicorn", "src.app:app"], "3", 3),
        (["uvicorn", "src.app:app", "--workers", "1"], "3", 1),
    ],
)
def test_worker_count_reads_the_uvicorn_command_line_then_web_concurrency(
    argv, web_concurrency, workers
):
    assert worker_count(argv, web_concurrency) == workers
