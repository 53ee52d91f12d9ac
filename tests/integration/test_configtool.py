"""Config as code: ``llm-gateway config validate`` and ``diff`` as an operator runs them,
the gateway refusing to start on a config validate rejects, and a reload naming what changed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT
from tests.support.configs import stub_config
from tests.support.gateway import GatewayDidNotStart, GatewayProcess

pytestmark = pytest.mark.slow

HASH = "a" * 64


def _tool(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "GW_TEST_UNSET_KEY"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "src", "config", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=environment,
    )  # fmt: skip


def _write(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(json.dumps(config, indent=2))
    return path


def _line(path: Path, needle: str) -> int:
    """The 1-based line of the first line of the file containing ``needle``."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_a_good_config_validates_with_its_warnings(tmp_path: Path) -> None:
    path = _write(tmp_path / "good.json", stub_config(tmp_path))
    run = _tool("validate", str(path))
    assert run.returncode == 0
    # the provider's key variable is not set: a warning (stub mode), not an error
    assert (
        f"{path}:{_line(path, 'api_key_env')}: warning: providers.openai.api_key_env:"
        " environment variable GW_TEST_UNSET_KEY is not set" in run.stdout
    )
    assert run.stdout.strip().endswith("valid (0 error(s), 1 warning(s))")
    assert (
        _tool("validate", str(path), env={"GW_TEST_UNSET_KEY": "x"}).stdout.count("warning:") == 0
    )


def test_schema_errors_name_their_line(tmp_path: Path) -> None:
    config = stub_config(tmp_path)
    config["rate_limit"] = {"requests_per_mintue": 5}
    config["aliases"]["other"] = {"provider": "nowhere", "model": "m"}
    path = _write(tmp_path / "bad.json", config)
    run = _tool("validate", str(path))
    assert run.returncode == 1
    typo = _line(path, "requests_per_mintue")
    assert (
        f"{path}:{typo}: error: rate_limit.requests_per_mintue: Extra inputs are not permitted"
        in run.stdout
    )
    assert f"{path}:{typo - 1}: error: rate_limit.requests_per_minute: Field required" in run.stdout


def test_cross_references_name_their_line(tmp_path: Path) -> None:
    config = stub_config(tmp_path)
    config["aliases"]["other"] = {"provider": "nowhere", "model": "m"}
    path = _write(tmp_path / "bad.json", config)
    run = _tool("validate", str(path))
    assert run.returncode == 1
    assert (
        f"{path}:{_line(path, 'nowhere')}: error: aliases.other.provider: unknown provider 'nowhere'"
        in run.stdout
    )


def test_rules_that_can_never_match_are_errors(tmp_path: Path) -> None:
    config = stub_config(
        tmp_path,
        clients={"acme": {"key_sha256": HASH}},
        policies=[{"name": "p", "action": "deny", "match": {"client": "ghost"}}],
        routes=[
            {"name": "all", "alias": "default-chat"},
            {"name": "later", "match": {"use_case": ["x"]}, "alias": "default-chat"},
        ],
    )
    path = _write(tmp_path / "never.json", config)
    run = _tool("validate", str(path))
    assert run.returncode == 1
    lines = path.read_text().splitlines()
    policy_match = next(i for i, text in enumerate(lines, 1) if '"client": "ghost"' in text) - 1
    assert (
        f"{path}:{policy_match}: error: policies.0.match: can never match: no client 'ghost'"
        in run.stdout
    )
    assert (
        "error: routes.1.match: can never match: rule 'all' before it matches every request"
        in run.stdout
    )


def test_a_fallback_leaving_the_allow_list_is_a_warning(tmp_path: Path) -> None:
    config = stub_config(
        tmp_path,
        aliases={
            "cheap": {"provider": "openai", "model": "mini",
                      "fallbacks": [{"provider": "openai", "model": "gold"}]},
            "premium": {"provider": "openai", "model": "gold"},
        },
        clients={"acme": {"key_sha256": HASH, "allowed_models": ["cheap"]}},
    )  # fmt: skip
    path = _write(tmp_path / "fallback.json", config)
    run = _tool("validate", str(path))
    assert run.returncode == 0
    assert (
        f"{path}:{_line(path, 'allowed_models')}: warning: clients.acme.allowed_models: alias"
        " 'cheap' falls back to openai/gold, the model of alias 'premium' that 'acme' may not use"
        in run.stdout
    )


def test_diff_says_what_changed_in_plain_words(tmp_path: Path) -> None:
    old = stub_config(tmp_path, clients={"acme": {"key_sha256": HASH}},
                      routes=[{"name": "r", "match": {"use_case": ["a"]}, "alias": "default-chat"}])  # fmt: skip
    new = json.loads(json.dumps(old))
    new["clients"]["beta"] = {"key_sha256": "b" * 64}
    new["clients"]["acme"]["rate_limit"] = {"requests_per_minute": 5}
    new["rate_limit"]["requests_per_minute"] = 50
    new["routes"][0]["match"]["use_case"] = ["b"]
    run = _tool(
        "diff", str(_write(tmp_path / "old.json", old)), str(_write(tmp_path / "new.json", new))
    )
    assert run.returncode == 0
    assert run.stdout.splitlines() == [
        "rate_limit.requests_per_minute changed: 100000 -> 50",
        "routes.r.match.use_case changed: ['a'] -> ['b']",
        "client added: beta",
        "clients.acme.rate_limit set: {requests_per_minute: 5, tokens_per_minute: None,"
        " reserve_completion_tokens: 256, mode: 'enforce', algorithm: 'sliding_log'}",
    ]


def test_the_gateway_refuses_to_start_on_a_config_validate_rejects(tmp_path: Path) -> None:
    config = stub_config(
        tmp_path, policies=[{"name": "p", "action": "deny", "match": {"alias": "nope"}}]
    )
    gateway = GatewayProcess(_write(tmp_path / "never.json", config), tmp_path)
    with pytest.raises(GatewayDidNotStart):
        gateway.start()
    gateway.stop()
    assert "policies.0.match: can never match: no alias 'nope' in aliases" in gateway.stderr()


def test_a_reload_names_what_it_changed_in_the_log(tmp_path: Path) -> None:
    config = stub_config(tmp_path)
    path = _write(tmp_path / "live.json", config)
    gateway = GatewayProcess(path, tmp_path).start()
    try:
        config["rate_limit"]["requests_per_minute"] = 7
        config["aliases"]["extra"] = {"provider": "openai", "model": "m2"}
        _write(path, config)
        gateway.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "change(s)" not in gateway.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        gateway.stop()
    log = gateway.stderr()
    assert f"config reloaded from {path}: 2 change(s)" in log
    assert "alias added: extra" in log
    assert "rate_limit.requests_per_minute changed: 100000 -> 7" in log
    telemetry = Path(config["log_file"])
    assert not telemetry.exists() or "alias added" not in telemetry.read_text()
