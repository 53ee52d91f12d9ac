"""GET /dashboard and /dashboard/data: the live figures of the last hour and day."""

from __future__ import annotations

import pytest

from src.config import parse_config
from src.observability.labels import Labels
from src.observability.metrics import InFlight
from src.observability.rolling import Rolling
from src.observability.telemetry import CallRecord
from tests.conftest import UPSTREAM, chat_body, completion, make_config


@pytest.fixture
def config(tmp_path, provider_key):
    return make_config(tmp_path, rate_limit={"requests_per_minute": 3})


async def test_data_counts_requests_errors_refusals_and_clients(gateway_client, upstream, config):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    client = await gateway_client(config)
    for _ in range(5):  # 3 admitted, 2 refused by the limit
        await client.post(
            "/v1/chat/completions", json=chat_body(), headers={"X-Client-Id": "team-a"}
        )
    await client.post("/v1/chat/completions", json=chat_body(), headers={"X-Client-Id": "team-b"})
    for window, buckets, width in (("hour", 60, 60), ("day", 96, 900)):
        response = await client.get(f"/dashboard/data?window={window}")
        assert response.status_code == 200
        data = response.json()
        assert (data["window"], data["bucket_seconds"], len(data["series"])) == (
            window,
            width,
            buckets,
        )
        totals = data["totals"]
        assert (totals["requests"], totals["errors"], totals["limited"]) == (6, 2, 2)
        assert (totals["input_tokens"], totals["output_tokens"]) == (44, 20)
        assert totals["p50_ms"] > 0 and totals["p95_ms"] >= totals["p50_ms"]
        assert sum(p["requests"] for p in data["series"]) == 6
        assert data["series"][-1]["requests"] == 6  # all in the current bucket
        assert data["limited_by_type"] == {"rate_limit_exceeded": 2}
        assert [(c["client"], c["requests"], c["errors"]) for c in data["clients"]] == [
            ("team-a", 5, 2), ("team-b", 1, 0),
        ]  # fmt: skip
        assert data["circuits"] == [
            {"provider": "primary", "model": "up-model-a", "state": "closed"},
            {"provider": "secondary", "model": "up-model-b", "state": "closed"},
        ]
        assert data["in_flight"] == 0


async def test_an_unknown_window_is_a_clear_400(gateway_client, config):
    client = await gateway_client(config)
    response = await client.get("/dashboard/data?window=week")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "window"


async def test_the_page_is_self_contained_and_guarded_by_the_admin_key(
    gateway_client, config, monkeypatch
):
    monkeypatch.setenv("GATEWAY_ADMIN_KEY", "adm-Zq93kd1")
    client = await gateway_client(config)
    for path in ("/dashboard", "/dashboard/data"):
        refused = await client.get(path)
        assert refused.status_code == 401 and "www-authenticate" in refused.headers
    page = await client.get("/dashboard", headers={"Authorization": "Bearer adm-Zq93kd1"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    for outside in ("http://", "https://", "src=", "@import"):
        assert outside not in page.text.replace("http://www.w3.org/2000/svg", "")


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
