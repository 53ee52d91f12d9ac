"""The ``llm-gateway`` command and the installable package, as an operator uses them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

from src.cli import parser
from tests.support import ROOT
from tests.support.configs import example_config
from tests.support.gateway import GatewayProcess
from tests.support.loopback import free_port

SEED_BODY = {
    "client_id": "dev-local-1",
    "model": "default-chat",
    "messages": [{"role": "user", "content": "Explain rate limiting in simple terms."}],
}


def cli(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "src", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_help_lists_every_operator_subcommand():
    result = cli("--help")
    assert result.returncode == 0
    for name in ("serve", "keys", "config", "report", "replay"):
        assert name in result.stdout


@pytest.mark.slow
def test_serve_answers_the_seed_request_with_the_gateways_own_http_layer(tmp_path):
    config = example_config()
    config["log_file"] = str(tmp_path / "gateway.log")
    with GatewayProcess(config, tmp_path, unset=("OPENAI_API_KEY",)) as gateway:
        answer = httpx.post(f"{gateway.base_url}/v1/chat", json=SEED_BODY, timeout=10).json()
        assert answer["usage"] == {"prompt_tokens": 7, "completion_tokens": 17, "total_tokens": 24}
        assert answer["message"]["content"].startswith("This is a stub response")
        # Only the gateway's own protocol answers a malformed request in the JSON envelope.
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
            sock.sendall(b"POST /v1/chat HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n{}")
            reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 400 ")
        assert b'"type":"invalid_request_error"' in reply


@pytest.mark.slow
def test_serve_refuses_several_workers_with_in_memory_state():
    result = cli("serve", "--workers", "2", "--port", str(free_port()))
    assert result.returncode == 2
    assert 'state.backend to "redis"' in result.stderr
    assert "--workers 2" in result.stderr


@pytest.mark.slow
def test_serve_refuses_a_backlog_below_one():
    result = cli("serve", "--backlog", "0", "--port", str(free_port()))
    assert result.returncode == 2
    assert "--backlog must be at least 1" in result.stderr


@pytest.mark.slow
def test_serve_stops_on_a_bad_config_with_one_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"providers": {}}))
    result = cli("serve", "--config", str(path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0]


@pytest.mark.slow
def test_keys_config_report_and_replay_are_subcommands(tmp_path):
    made = cli("keys", "new", "acme")
    assert made.returncode == 0 and "key_sha256:" in made.stdout
    valid = cli("config", "validate", "config/example.config.json")
    assert valid.returncode == 0 and "valid" in valid.stdout
    log = tmp_path / "empty.log"
    log.write_text("")
    report = cli("report", str(log), "--format", "json")
    assert report.returncode == 0
    replay = cli("replay", "--config", "config/example.config.json", str(log))
    assert replay.returncode == 0


def test_every_package_of_the_tree_is_in_the_distribution():
    """The packages pyproject.toml lists are exactly the folders of ``src`` with code."""
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(("llm_gateway", *init.parent.relative_to(ROOT / "src").parts))
        for init in (ROOT / "src").rglob("__init__.py")
    }
    assert listed == found


@pytest.mark.slow
def test_the_installed_package_runs_its_command_from_another_folder(tmp_path):
    """``pip install`` of the checkout gives ``llm_gateway`` and its command, outside the tree."""
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run(
        [sys.executable, "-m", "llm_gateway", "config", "validate", str(ROOT / "config/example.config.json")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (target / "llm_gateway" / "edge" / "dashboard.html").exists()
    assert (target / "bin" / "llm-gateway").exists()


def test_the_parser_names_the_command_llm_gateway():
    assert parser().prog == "llm-gateway"
