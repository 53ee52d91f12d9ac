"""GET /metrics: what each request adds, bounded labels, the admin key, the in-flight gauge."""

from __future__ import annotations

import asyncio
import base64
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from src.config import parse_config
from src.observability.labels import Labels
from src.observability.metrics import Metrics
from src.observability.telemetry import CallRecord
from tests.support.configs import UPSTREAM, make_config
from tests.support.payloads import chat_body, completion

SECONDARY = "http://secondary.test/v1/chat/completions"


async def scrape(client: httpx.AsyncClient, **headers: str) -> dict[tuple[str, frozenset], float]:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def sse(*chunks: dict) -> bytes:
    import json

    return (
        b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    )


def chunk(content: str) -> dict:
    return {
        "id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "up-model-a",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }  # fmt: skip


@pytest.fixture
def config(tmp_path, provider_key):
    return make_config(tmp_path)


async def test_requests_tokens_and_latency_are_counted_by_client_alias_provider_status(
    gateway_client, upstream, config
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    client = await gateway_client(config)
    for _ in range(3):
        await client.post(
            "/v1/chat/completions", json=chat_body(), headers={"X-Client-Id": "team-a"}
        )
    await client.post("/v1/chat/completions", json={**chat_body(), "model": "missing"})
    samples = await scrape(client)
    ok = {"client": "team-a", "alias": "default-chat", "provider": "primary"}
    assert value(samples, "gateway_requests_total", **ok, status="200") == 3
    assert value(samples, "gateway_tokens_total", **ok, type="input") == 33
    assert value(samples, "gateway_tokens_total", **ok, type="output") == 15
    path = {"alias": "default-chat", "provider": "primary"}
    assert value(samples, "gateway_request_duration_seconds_count", **path) == 3
    assert value(samples, "gateway_request_duration_seconds_bucket", **path, le="+Inf") == 3
    assert 0 < value(samples, "gateway_request_duration_seconds_sum", **path) < 3
    assert value(samples, "gateway_upstream_duration_seconds_count", **path) == 3
    assert value(samples, "gateway_upstream_attempts_total", provider="primary", result="ok") == 3
    # an unknown model is raw client input: it never becomes a label value
    refused = {"client": "anonymous", "alias": "unknown", "provider": "none", "status": "404"}
    assert value(samples, "gateway_requests_total", **refused) == 1
    assert not any("missing" in str(labels) for _, labels in samples)
    assert not any(name.endswith("_created") for name, _ in samples)


async def test_time_to_first_token_is_observed_for_streams(gateway_client, upstream, config):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(
        200, headers={"content-type": "text/event-stream"}, content=sse(chunk("Hi"), chunk("!"))
    )
    client = await gateway_client(config)
    response = await client.post("/v1/chat/completions", json=chat_body(stream=True))
    assert response.status_code == 200 and "[DONE]" in response.text
    samples = await scrape(client)
    path = {"alias": "default-chat", "provider": "primary"}
    assert value(samples, "gateway_time_to_first_token_seconds_count", **path) == 1
    assert value(samples, "gateway_time_to_first_token_seconds_bucket", **path, le="+Inf") == 1


async def test_fallbacks_and_failed_attempts_are_counted(gateway_client, upstream, config):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(503)
    upstream.post(SECONDARY).respond(json=completion())
    client = await gateway_client(config)
    assert (await client.post("/v1/chat/completions", json=chat_body())).status_code == 200
    samples = await scrape(client)
    assert value(samples, "gateway_fallbacks_total", alias="default-chat") == 1
    assert (
        value(samples, "gateway_upstream_attempts_total", provider="primary", result="http_503")
        == 1
    )
    assert value(samples, "gateway_upstream_attempts_total", provider="secondary", result="ok") == 1
    assert value(
        samples, "gateway_requests_total",
        client="anonymous", alias="default-chat", provider="secondary", status="200",
    ) == 1  # fmt: skip


async def test_rate_limited_requests_are_counted_by_error_type(
    gateway_client, upstream, tmp_path, provider_key
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    client = await gateway_client(make_config(tmp_path, rate_limit={"requests_per_minute": 2}))
    statuses = [
        (
            await client.post(
                "/v1/chat/completions", json=chat_body(), headers={"X-Client-Id": "greedy"}
            )
        ).status_code
        for _ in range(5)
    ]
    assert statuses == [200, 200, 429, 429, 429]
    samples = await scrape(client)
    limited = {"client": "greedy", "error_type": "rate_limit_exceeded"}
    assert value(samples, "gateway_limited_requests_total", **limited) == 3
    # the first refusal names its model; the client is then known to be over its limit,
    # so the next two are refused before their body (and its model) is read
    assert value(
        samples, "gateway_requests_total",
        client="greedy", alias="default-chat", provider="none", status="429",
    ) == 1  # fmt: skip
    assert value(
        samples, "gateway_requests_total",
        client="greedy", alias="none", provider="none", status="429",
    ) == 2  # fmt: skip


async def test_client_label_values_are_capped_with_an_other_bucket(
    gateway_client, upstream, tmp_path, provider_key
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(json=completion())
    config = make_config(tmp_path, metrics={"max_clients": 3})
    client = await gateway_client(config)
    for i in range(8):
        await client.post(
            "/v1/chat/completions", json=chat_body(), headers={"X-Client-Id": f"c{i}"}
        )
    samples = await scrape(client)
    clients = {
        dict(labels)["client"] for name, labels in samples if name == "gateway_requests_total"
    }
    assert clients == {"c0", "c1", "c2", "other"}
    assert value(
        samples, "gateway_requests_total",
        client="other", alias="default-chat", provider="primary", status="200",
    ) == 5  # fmt: skip


async def test_in_flight_counts_a_request_until_its_stream_ends(gateway_client, upstream, config):
    release = asyncio.Event()

    async def slow_stream(request):
        async def body():
            await release.wait()
            yield sse(chunk("late"))

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    upstream.post(f"{UPSTREAM}/chat/completions").mock(side_effect=slow_stream)
    client = await gateway_client(config)
    pending = asyncio.create_task(client.post("/v1/chat/completions", json=chat_body(stream=True)))
    deadline = time.monotonic() + 5
    while value(await scrape(client), "gateway_requests_in_flight") != 1:
        assert time.monotonic() < deadline, "the open stream was never counted in flight"
        await asyncio.sleep(0.01)
    release.set()
    assert (await pending).status_code == 200
    assert value(await scrape(client), "gateway_requests_in_flight") == 0


async def test_circuit_state_starts_closed_and_follows_the_hook(gateway_client, config):
    client = await gateway_client(config)
    target = {"provider": "secondary", "model": "up-model-b"}
    assert value(await scrape(client), "gateway_circuit_state", **target) == 0
    client.app.state.telemetry.circuit_changed("secondary", "up-model-b", "open")
    assert value(await scrape(client), "gateway_circuit_state", **target) == 2
    client.app.state.telemetry.circuit_changed("secondary", "up-model-b", "half_open")
    assert value(await scrape(client), "gateway_circuit_state", **target) == 1


def test_cost_and_retries_are_read_from_the_line_when_present(tmp_path):
    config = parse_config({
        "providers": {"p": {"base_url": "http://p.test/v1"}},
        "aliases": {"a": {"provider": "p", "model": "m"}},
        "rate_limit": {"requests_per_minute": 10},
        "log_file": str(tmp_path / "g.log"),
    })  # fmt: skip
    metrics = Metrics(config, Labels(config))
    record = CallRecord("gw-1", "/v1/chat/completions", "team-c")
    record.alias, record.provider = "a", "p"
    for cost in (0.25, 0.5):
        metrics.observe(record, {**record.fields(), "cost_usd": cost, "retries": 2})
    metrics.observe(record, record.fields())  # a line without cost_usd counts no spend
    samples = parse(metrics.render(None)[0].decode())
    assert (
        value(samples, "gateway_cost_usd_total", client="team-c", alias="a", provider="p") == 0.75
    )
    assert value(samples, "gateway_upstream_retries_total", alias="a") == 4


async def test_metrics_need_the_admin_key_when_one_is_set(gateway_client, config, monkeypatch):
    monkeypatch.setenv("GATEWAY_ADMIN_KEY", "adm-Kx81fq2")
    client = await gateway_client(config)
    refused = await client.get("/metrics")
    assert refused.status_code == 401
    assert refused.json()["error"]["type"] == "authentication_error"
    assert refused.headers["www-authenticate"].startswith("Basic")
    assert "adm-Kx81fq2" not in refused.text
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    await scrape(client, Authorization="Bearer adm-Kx81fq2")
    basic = base64.b64encode(b"prometheus:adm-Kx81fq2").decode()
    await scrape(client, Authorization=f"Basic {basic}")


async def test_metrics_can_be_turned_off(gateway_client, tmp_path, provider_key):
    client = await gateway_client(make_config(tmp_path, metrics={"enabled": False}))
    assert (await client.get("/metrics")).status_code == 404
    assert (await client.get("/dashboard")).status_code == 404


def test_a_multiprocess_dir_that_is_not_a_directory_stops_start_up(tmp_path, monkeypatch):
    from src.config import ConfigError
    from src.edge.app import create_app

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match=r"PROMETHEUS_MULTIPROC_DIR .*absent: not a directory"):
        create_app(make_config(tmp_path))


async def test_a_breaker_that_opens_shows_in_the_metric_and_the_dashboard(
    gateway_client, upstream, tmp_path, provider_key
):
    upstream.post(f"{UPSTREAM}/chat/completions").respond(503)
    upstream.post(SECONDARY).respond(json=completion())
    config = make_config(tmp_path, breaker={"failure_threshold": 1, "cooldown_s": 60})
    client = await gateway_client(config)
    assert (await client.post("/v1/chat/completions", json=chat_body())).status_code == 200
    primary = {"provider": "primary", "model": "up-model-a"}
    samples = await scrape(client)
    assert value(samples, "gateway_circuit_state", **primary) == 2
    assert value(samples, "gateway_circuit_state", provider="secondary", model="up-model-b") == 0
    circuits = (await client.get("/dashboard/data")).json()["circuits"]
    assert {**primary, "state": "open"} in circuits


async def test_retries_from_the_line_are_counted(gateway_client, upstream, tmp_path, provider_key):
    route = upstream.post(f"{UPSTREAM}/chat/completions")
    route.side_effect = [httpx.Response(503), httpx.Response(200, json=completion())]
    retry = {"max_attempts": 3, "base_backoff_s": 0.001, "max_backoff_s": 0.002}
    client = await gateway_client(make_config(tmp_path, retry=retry))
    assert (await client.post("/v1/chat/completions", json=chat_body())).status_code == 200
    samples = await scrape(client)
    assert value(samples, "gateway_upstream_retries_total", alias="default-chat") == 1
    assert (
        value(samples, "gateway_upstream_attempts_total", provider="primary", result="http_503")
        == 1
    )
    assert value(samples, "gateway_upstream_attempts_total", provider="primary", result="ok") == 1
