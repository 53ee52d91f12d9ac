"""llm-gateway report: per day, client and alias, from the log and its rotated files."""

from __future__ import annotations

import csv
import io
import json
import random
import subprocess
import sys

import pytest

from src.observability.sketch import RELATIVE_ERROR, LatencyHistogram
from tests.support import ROOT

pytestmark = pytest.mark.slow


def line(day: str, client: str, alias: str | None, *, status=200, latency=10.0, cost=None,
         prompt=3, completion=4, hour=12) -> str:  # fmt: skip
    record = {
        "request_id": "gw-000000000000", "client_id": client, "endpoint": "/v1/chat/completions",
        "alias": alias, "provider": "openai", "status": status,
        "error_type": None if status < 400 else "upstream_error", "latency_ms": latency,
        "prompt_tokens": prompt, "completion_tokens": completion, "event": "request",
        "timestamp": f"{day}T{hour:02d}:30:00.000001Z",
    }  # fmt: skip
    if cost is not None:
        record["cost_usd"] = cost
    return json.dumps(record)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "src", "report", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


@pytest.fixture
def logs(tmp_path):
    """A log rotated twice: the oldest lines in .2, the newest in the live file."""
    base = tmp_path / "gateway.log"
    (tmp_path / "gateway.log.2").write_text(
        line("2026-11-01", "team-a", "chat", latency=10.0, cost=0.5)
        + "\n"
        + line("2026-11-01", "team-a", "chat", latency=20.0, cost=0.25)
        + "\n"
    )
    (tmp_path / "gateway.log.1").write_text(
        line("2026-11-01", "team-a", "chat", status=502, latency=30.0, prompt=None, completion=None)
        + "\n{not json\n"
        + line("2026-11-02", "team-b", "chat", latency=5.0)
        + "\n"
    )
    base.write_text(
        line("2026-11-02", "team-b", None, status=400, latency=1.0, prompt=None, completion=None)
        + "\n"
        + '{"event":"reload","timestamp":"2026-11-02T00:00:00Z","status":0}'
        + "\n"
        + '["a list"]'
        + "\n"
        + line("2026-11-03", "team-a", "chat")
        + "\n"
    )
    return base


def test_json_rows_per_day_client_and_alias_across_rotated_files(logs):
    done = run(str(logs), "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    keys = [(r["day"], r["client_id"], r["alias"]) for r in rows]
    assert keys == [
        ("2026-11-01", "team-a", "chat"),
        ("2026-11-02", "team-b", "-"),
        ("2026-11-02", "team-b", "chat"),
        ("2026-11-03", "team-a", "chat"),
    ]
    first = rows[0]
    assert (first["requests"], first["errors"]) == (3, 1)
    assert (first["input_tokens"], first["output_tokens"]) == (6, 8)
    assert first["cost_usd"] == 0.75
    assert first["p50_latency_ms"] == pytest.approx(20.0, rel=RELATIVE_ERROR)
    assert first["p95_latency_ms"] == pytest.approx(30.0, rel=RELATIVE_ERROR)
    assert "2 damaged line(s) skipped" in done.stderr


def test_since_and_until_bound_the_period(logs):
    done = run(str(logs), "--since", "2026-11-02", "--until", "2026-11-02", "--format", "json")
    assert {r["day"] for r in json.loads(done.stdout)} == {"2026-11-02"}
    done = run(str(logs), "--since", "2026-11-01T12:00:00Z", "--until", "2026-11-02T12:30:00",
               "--format", "json")  # fmt: skip
    rows = json.loads(done.stdout)
    assert [(r["day"], r["alias"]) for r in rows] == [("2026-11-01", "chat")]
    bad = run(str(logs), "--since", "yesterday")
    assert bad.returncode == 2 and "bad --since/--until" in bad.stderr


def test_csv_and_table_formats(logs):
    rows = list(csv.DictReader(io.StringIO(run(str(logs), "--format", "csv").stdout)))
    assert len(rows) == 4 and rows[0]["requests"] == "3" and rows[0]["cost_usd"] == "0.75"
    table = run(str(logs)).stdout.splitlines()
    assert table[0].split() == [
        "day", "client_id", "alias", "requests", "errors", "input_tokens", "output_tokens",
        "cost_usd", "p50_latency_ms", "p95_latency_ms",
    ]  # fmt: skip
    assert table[1].split()[:8] == ["2026-11-01", "team-a", "chat", "3", "1", "6", "8", "0.75"]


def test_the_default_log_is_the_configs_log_file(logs, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "providers": {"p": {"base_url": "http://p.test/v1"}},
        "aliases": {"chat": {"provider": "p", "model": "m"}},
        "rate_limit": {"requests_per_minute": 5},
        "log_file": str(logs),
    }))  # fmt: skip
    done = run("--format", "json", env={"GATEWAY_CONFIG": str(config), "PATH": ""})
    assert done.returncode == 0, done.stderr
    assert sum(r["requests"] for r in json.loads(done.stdout)) == 6
    missing = run(str(tmp_path / "nothing.log"))
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_percentiles_stay_within_the_documented_relative_error():
    rng = random.Random(3)
    values = [rng.lognormvariate(5, 1.2) for _ in range(20_000)]
    histogram = LatencyHistogram()
    for v in values:
        histogram.add(v)
    ordered = sorted(values)
    for q in (0.5, 0.9, 0.95, 0.99):
        exact = ordered[max(0, int(q * len(ordered) + 0.999999) - 1)]
        assert histogram.quantile(q) == pytest.approx(exact, rel=RELATIVE_ERROR + 1e-3)
