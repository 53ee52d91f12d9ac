"""The benchmark command runs end to end (a short smoke run; its figures decide nothing here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.slow


@pytest.mark.skipif(
    shutil.which("wrk") is None and not os.environ.get("CI"),
    reason="wrk is not installed (apt-get install -y wrk); CI installs it",
)
def test_quick_benchmark_runs_and_reports_both_targets(tmp_path):
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| nonstream | 16 | gateway |" in result.stdout
    assert "| stream | 1 | gateway |" in result.stdout
    assert out.exists() and out.stat().st_size > 0


def test_the_relay_cost_runs_and_reports_a_cost_per_chunk():
    result = subprocess.run(
        [sys.executable, "-m", "bench.relay_cost", "--streams", "5", "--chunks", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "per relayed chunk:" in result.stdout
