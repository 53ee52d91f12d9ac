"""Replay, end to end: a log recorded by the real gateway under uvicorn, replayed against a changed
config, shows exactly the expected differences."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ROOT
from tests.support.configs import stub_config
from tests.support.gateway import running_gateway

pytestmark = pytest.mark.slow


def _clients(**extra: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {
            "key_sha256": hashlib.sha256(f"sk-{name}".encode()).hexdigest(),
            **extra.get(name, {}),
        }
        for name in ("acme", "beta")
    }


def _config(home: Path, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "aliases": {
            "chat": {"provider": "openai", "model": "small"},
            "big": {"provider": "openai", "model": "large"},
            "cheap": {"provider": "openai", "model": "tiny"},
        },
        "clients": _clients(),
        "policies": [{"name": "log-all", "action": "log_payload"}],
    }
    return stub_config(home, **{**settings, **overrides})


def _send(base: str, client: str, model: str, content: str) -> str:
    answer = httpx.post(
        base + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": content}]},
        headers={"authorization": f"Bearer sk-{client}"},
        timeout=10,
    )
    assert answer.status_code == 200
    return answer.headers["x-request-id"]


def test_replay_reports_exactly_what_the_new_config_changes(tmp_path: Path) -> None:
    old = _config(tmp_path)
    with running_gateway(old, tmp_path) as gateway:
        base = gateway.base_url
        ids = {
            "acme": [
                _send(base, "acme", "chat", text) for text in ("hello", "hi", "my secret", "hey")
            ],
            "beta_chat": [_send(base, "beta", "chat", "hello") for _ in range(2)],
            "beta_big": [_send(base, "beta", "big", "hello")],
        }
    log = Path(old["log_file"])
    deadline = time.monotonic() + 5
    while len(log.read_text().splitlines()) < 7 and time.monotonic() < deadline:
        time.sleep(0.05)
    new = _config(
        tmp_path,
        clients=_clients(acme={"rate_limit": {"requests_per_minute": 2}}),
        policies=[
            {"name": "log-all", "action": "log_payload"},
            {"name": "no-secrets", "action": "block_pattern", "patterns": ["secret"]},
            {"name": "no-big", "action": "deny", "match": {"client": "beta", "alias": "big"}},
            {"name": "watch-beta", "action": "deny", "match": {"client": "beta"}, "mode": "shadow"},
        ],
        routes=[{"name": "beta-cheap", "match": {"client": ["beta"], "model": ["chat"]},
                 "alias": "cheap"}],
    )  # fmt: skip
    new_path = tmp_path / "new.json"
    new_path.write_text(json.dumps(new))
    run = subprocess.run(
        [sys.executable, "-m", "src", "replay", "--config", str(new_path), "--json", str(log)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["requests"] == 7 and report["skipped"] == 0
    differences = [(d["category"], d["client"], d["rule"], d["request_ids"])
                   for d in report["differences"]]  # fmt: skip
    # the shadow rule comes after no-big, which stops beta's "big" request before it
    assert differences == [
        ("denied", "acme", "policies.no-secrets (content_blocked)", [ids["acme"][2]]),
        ("denied", "beta", "policies.no-big (policy_denied)", ids["beta_big"]),
        ("rate_limited", "acme",
         "clients.acme.rate_limit.requests_per_minute (rate_limit_exceeded)", [ids["acme"][3]]),
        ("rerouted", "beta", "alias chat -> cheap", ids["beta_chat"]),
        ("shadow", "beta", "policies.watch-beta (would policy_denied)", ids["beta_chat"]),
    ]  # fmt: skip
    assert report["summary"] == {
        "denied": 2, "rate_limited": 1, "over_budget": 0, "rerouted": 2, "newly_allowed": 0,
        "shadow": 2,
    }  # fmt: skip
    text = subprocess.run(
        [sys.executable, "-m", "src", "replay", "--config", str(new_path), str(log)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    assert "rate limited: 1" in text
    assert f"client beta, alias chat -> cheap: 2 ({', '.join(ids['beta_chat'])})" in text


def test_replay_against_the_same_config_finds_no_difference(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with running_gateway(config, tmp_path) as gateway:
        base = gateway.base_url
        for _ in range(3):
            _send(base, "acme", "chat", "hello")
    path = tmp_path / "same.json"
    path.write_text(json.dumps(config))
    time.sleep(0.3)
    run = subprocess.run(
        [sys.executable, "-m", "src", "replay", "--config", str(path), config["log_file"]],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0
    assert "replayed 3 request(s)" in run.stdout and "no differences" in run.stdout
