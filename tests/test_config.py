"""Config: strict, typed, and a bad file stops start-up with one line naming the file and field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from src.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "gw.json"
    path.write_text(json.dumps(data))
    return path


def good() -> dict:
    return json.loads((ROOT / "config/example.config.json").read_text())


def test_example_config_has_the_seed_names():
    config = load_config(ROOT / "config/example.config.json")
    assert config.providers["openai"].api_key_env == "OPENAI_API_KEY"
    assert config.aliases["default-chat"].provider == "openai"
    assert config.rate_limit.requests_per_minute == 20
    assert config.max_body_bytes == 32 * 1024 * 1024


def test_config_path_comes_from_gateway_config(tmp_path, monkeypatch):
    data = good()
    data["rate_limit"]["requests_per_minute"] = 7
    monkeypatch.setenv("GATEWAY_CONFIG", str(write(tmp_path, data)))
    assert load_config().rate_limit.requests_per_minute == 7


def test_unknown_field_is_refused_naming_it(tmp_path):
    data = good()
    data["providers"]["openai"]["api_key"] = "sk-inline"
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert "providers.openai.api_key" in str(err.value)


def test_alias_naming_an_unknown_provider_is_refused(tmp_path):
    data = good()
    data["aliases"]["default-chat"]["fallbacks"] = [{"provider": "ghost", "model": "m"}]
    with pytest.raises(
        ConfigError,
        match=r"aliases\.default-chat\.fallbacks\.0\.provider: unknown provider 'ghost'",
    ):
        load_config(write(tmp_path, data))


def test_wrong_type_names_the_field(tmp_path):
    data = good()
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


def test_server_refuses_to_start_on_a_bad_config_with_one_line(tmp_path):
    data = good()
    data["rate_limit"] = {"requests_per_minute": 0}
    path = write(tmp_path, data)
    result = subprocess.run(
        [sys.executable, "-c", "import src.app; src.app.app"],
        cwd=ROOT,
        env={**os.environ, "GATEWAY_CONFIG": str(path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(path) in lines[0] and "rate_limit.requests_per_minute" in lines[0]


def test_importing_the_app_module_from_another_folder_reads_no_file(tmp_path):
    """``import src.app`` builds nothing: the app is made on first use of ``src.app.app``."""
    result = subprocess.run(
        [sys.executable, "-c", "import src.app"],
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "GATEWAY_CONFIG": str(tmp_path / "absent.json"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert not (tmp_path / "logs").exists()
