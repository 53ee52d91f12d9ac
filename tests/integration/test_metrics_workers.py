"""Several uvicorn workers: PROMETHEUS_MULTIPROC_DIR makes /metrics count every worker's requests."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.configs import stub_config
from tests.support.gateway import running_gateway

pytestmark = pytest.mark.slow

BODY = {"model": "default-chat", "messages": [{"role": "user", "content": "hi"}]}


def total_requests(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "gateway_requests_total"
    )


async def burst(base: str, n: int) -> None:
    async def one() -> None:
        # a connection per request, so the workers share the burst
        async with httpx.AsyncClient(base_url=base) as client:
            response = await client.post("/v1/chat/completions", json=BODY)
            assert response.status_code == 200

    await asyncio.gather(*(one() for _ in range(n)))


async def test_metrics_merge_the_workers_in_multiprocess_mode(tmp_path):
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with running_gateway(
        stub_config(tmp_path), tmp_path, workers=2, env=env, command="uvicorn"
    ) as gateway:
        base = gateway.base_url
        sent = 0
        deadline = time.monotonic() + 20
        while len(list(metrics_dir.glob("counter_*.db"))) < 2:
            assert time.monotonic() < deadline, "the requests never reached the second worker"
            await burst(base, 20)
            sent += 20
        async with httpx.AsyncClient(base_url=base) as client:
            for _ in range(4):  # whichever worker answers the scrape, it reports them all
                response = await client.get("/metrics")
                assert response.status_code == 200
                assert total_requests(response.text) == sent
