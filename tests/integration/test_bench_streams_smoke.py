"""The many-streams benchmark runs end to end (a short smoke run; its figures decide nothing here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_quick_streams_benchmark_reports_direct_and_gateway_without_failures(tmp_path):
    out = tmp_path / "streams.json"
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--streams", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| direct | 4 |" in result.stdout
    assert "| gateway | 16 |" in result.stdout
    data = json.loads(out.read_text())
    rows = {(row["target"], row["streams"]): row for row in data["rows"]}
    assert set(rows) == {("direct", 4), ("gateway", 4), ("direct", 16), ("gateway", 16)}
    for row in rows.values():
        assert row["failed"] == 0 and row["failed_in_ramp"] == 0, row
        assert row["streams_per_s"] > 0 and row["chunks_per_s"] > 0
        assert row["ttft_p50_ms"] is not None and row["gap_p99_ms"] is not None
    gateway = rows[("gateway", 16)]
    for field in (
        "added_ttft_p50_ms",
        "added_gap_p99_ms",
        "cpu_us_per_stream",
        "cpu_us_per_chunk",
        "rss_peak_mib",
        "kib_per_stream",
        "load_busy",
    ):
        assert gateway[field] is not None, field
    assert data["meta"]["chunks"] == 8 and data["meta"]["streams"] == [4, 16]
