"""The seed's module ``src.app`` in a fresh interpreter: importing it reads no file, and a bad
config stops it, when the app is first used, with one line naming the file and the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import ROOT
from tests.support.configs import example_config

pytestmark = pytest.mark.slow


def test_server_refuses_to_start_on_a_bad_config_with_one_line(tmp_path):
    data = example_config()
    data["rate_limit"] = {"requests_per_minute": 0}
    path = tmp_path / "gw.json"
    path.write_text(json.dumps(data))
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
