"""Config: strict, typed, and a bad file stops start-up with one line naming the file and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from src.config import ConfigError, load_config
from tests.support import ROOT
from tests.support.configs import example_config


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "gw.json"
    path.write_text(json.dumps(data))
    return path


def test_example_config_has_the_seed_names():
    config = load_config(ROOT / "config/example.config.json")
    assert config.providers["openai"].api_key_env == "OPENAI_API_KEY"
    assert config.aliases["default-chat"].provider == "openai"
    assert config.rate_limit.requests_per_minute == 20
    assert config.max_body_bytes == 32 * 1024 * 1024


def test_config_path_comes_from_gateway_config(tmp_path, monkeypatch):
    data = example_config()
    data["rate_limit"]["requests_per_minute"] = 7
    monkeypatch.setenv("GATEWAY_CONFIG", str(write(tmp_path, data)))
    assert load_config().rate_limit.requests_per_minute == 7


def test_unknown_field_is_refused_naming_it(tmp_path):
    data = example_config()
    data["providers"]["openai"]["api_key"] = "sk-inline"
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert "providers.openai.api_key" in str(err.value)


def test_alias_naming_an_unknown_provider_is_refused(tmp_path):
    data = example_config()
    data["aliases"]["default-chat"]["fallbacks"] = [{"provider": "ghost", "model": "m"}]
    with pytest.raises(
        ConfigError,
        match=r"aliases\.default-chat\.fallbacks\.0\.provider: unknown provider 'ghost'",
    ):
        load_config(write(tmp_path, data))


def test_wrong_type_names_the_field(tmp_path):
    data = example_config()
    data["rate_limit"]["requests_per_minute"] = "many"
    with pytest.raises(ConfigError, match=r"rate_limit\.requests_per_minute"):
        load_config(write(tmp_path, data))


def test_not_json_and_missing_file_are_one_line_errors(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.json")
