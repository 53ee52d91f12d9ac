"""The dashboard rolling buckets alone: they leave the window as time passes."""

from __future__ import annotations

from src.config import parse_config
from src.observability.labels import Labels
from src.observability.metrics import InFlight
from src.observability.rolling import Rolling
from src.observability.telemetry import CallRecord


def test_buckets_leave_the_window_as_time_passes(tmp_path):
    config = parse_config({
        "providers": {"p": {"base_url": "http://p.test/v1"}},
        "aliases": {"a": {"provider": "p", "model": "m"}},
        "rate_limit": {"requests_per_minute": 10},
        "log_file": str(tmp_path / "g.log"),
    })  # fmt: skip
    now = [1_800_000_000.0]
    rolling = Rolling(config, Labels(config), InFlight(None), clock=lambda: now[0])
    record = CallRecord("gw-1", "/v1/chat/completions", "c")
    record.alias = "a"
    rolling.observe(record, {**record.fields(), "cost_usd": 0.5})
    now[0] += 30 * 60  # half an hour later: in both windows
    rolling.observe(record, record.fields())
    assert rolling.snapshot("hour")["totals"]["requests"] == 2
    now[0] += 45 * 60  # the first is now more than an hour old
    assert rolling.snapshot("hour")["totals"]["requests"] == 1
    day = rolling.snapshot("day")
    assert day["totals"]["requests"] == 2 and day["clients"][0]["cost_usd"] == 0.5
    now[0] += 25 * 3600
    assert rolling.snapshot("day")["totals"]["requests"] == 0
    rolling.circuit_changed("p", "m", "open")
    assert rolling.snapshot("day")["circuits"] == [{"provider": "p", "model": "m", "state": "open"}]
