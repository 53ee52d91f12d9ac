"""GET /dashboard and /dashboard/data: the live figures of the last hour and day."""

from __future__ import annotations

import pytest

from tests.support.configs import UPSTREAM, make_config
from tests.support.payloads import chat_body, completion


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
