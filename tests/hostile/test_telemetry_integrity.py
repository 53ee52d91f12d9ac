"""Telemetry integrity: one valid line per request, in the file and on stdout, under load.

A gateway process gets thousands of concurrent requests with mixed outcomes
(answers, streams, upstream faults, refused bodies, unknown models, its own
rate limit); afterwards the file and stdout each hold exactly one JSON line per
request, with no request id twice. A log file that cannot be written (a full
disk, a path that cannot exist) does not stop the serving; the lost lines are
counted.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from src.config import parse_config
from src.edge.app import create_app
from tests.hostile.harness import PROVIDER_KEY, Exposure, gateway_config, hostile_gateway, scaled
from tests.support.gateway import serve_in_thread
from tests.support.loopback import wait_until
from tests.support.upstream import FakeUpstream, directive

pytestmark = pytest.mark.slow


def _request(index: int, rng: random.Random) -> tuple[str, dict[str, Any] | bytes, dict[str, str]]:
    roll = rng.random()
    rid = f"tel-{index}"
    client = {"x-client-id": f"client-{index % 7}"}
    if roll < 0.05:
        return "/v1/chat/completions", b"{broken", client
    if roll < 0.08:
        return (
            "/v1/chat/completions",
            {"model": "nope", "messages": [{"role": "user", "content": "x"}]},
            client,
        )
    if roll < 0.12:
        return (
            "/v1/chat/completions",
            {
                "model": "chat",
                "messages": [
                    {
                        "role": "user",
                        "content": directive(rid, rng.choice(["status:500", "html", "reset:2"])),
                    }
                ],
                "stream": rng.random() < 0.5,
            },
            client,
        )
    if roll < 0.15:
        return (
            "/v1/chat/completions",
            {"model": "chat", "messages": [{"role": "user", "content": "x"}]},
            {"x-client-id": "limited"},
        )
    path = rng.choice(
        ["/v1/chat/completions", "/v1/chat/completions", "/v1/messages", "/v1/embeddings"]
    )
    text = directive(rid, "ok")
    if path == "/v1/embeddings":
        return path, {"model": "chat", "input": text}, client
    body: dict[str, Any] = {
        "model": "chat",
        "messages": [{"role": "user", "content": text}],
        "stream": rng.random() < 0.4,
    }
    if path == "/v1/messages":
        body["max_tokens"] = 20
    return path, body, client


async def _load(base_url: str, count: int, concurrency: int) -> list[httpx.Response]:
    rng = random.Random(8)
    requests = [_request(i, rng) for i in range(count)]
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:

        async def one(path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
            async with gate:
                if isinstance(body, bytes):
                    return await client.post(path, content=body, headers=headers)
                return await client.post(path, json=body, headers=headers)

        return await asyncio.gather(*(one(*request) for request in requests))


def test_every_request_gets_exactly_one_valid_line_in_the_file_and_on_stdout(
    upstream: FakeUpstream,
    exposure: Exposure,
    figures: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    home: Path = tmp_path_factory.mktemp("telemetry")
    count = scaled(5000)
    config = gateway_config(
        upstream.base_url, home / "gateway.log", rate_limit={"requests_per_minute": count // 10}
    )
    gateway = hostile_gateway(home, config).start()
    try:
        responses = asyncio.run(_load(gateway.base_url, count, 64))
    finally:
        exit_code = gateway.stop()
    statuses: dict[int, int] = {}
    for response in responses:
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    file_raw = gateway.log_file.read_bytes().splitlines()
    stdout_raw = [line for line in gateway.stdout_file.read_bytes().splitlines() if line.strip()]
    exposure.files += [gateway.log_file, gateway.stdout_file, gateway.stderr_file]

    def valid(lines: list[bytes]) -> list[dict[str, Any]]:
        parsed = []
        for line in lines:
            value = json.loads(line)
            assert isinstance(value, dict) and value.get("event") == "request"
            parsed.append(value)
        return parsed

    in_file, on_stdout = valid(file_raw), valid(stdout_raw)
    file_ids = [line["request_id"] for line in in_file]
    answered_ids = {response.headers.get("x-request-id") for response in responses} - {None}
    figures.record(
        "telemetry",
        requests=count,
        outcomes=dict(sorted((str(k), v) for k, v in statuses.items())),
        lines_in_file=len(in_file),
        lines_on_stdout=len(on_stdout),
        invalid_lines=0,
        duplicate_request_ids=len(file_ids) - len(set(file_ids)),
    )
    assert exit_code == 0
    assert len(statuses) >= 4, statuses  # mixed outcomes
    assert len(in_file) == count
    assert len(on_stdout) == count
    assert len(set(file_ids)) == count
    assert {line["request_id"] for line in on_stdout} == set(file_ids)
    assert answered_ids <= set(file_ids)


@pytest.mark.parametrize("place", ["full disk", "unwritable path"])
def test_a_log_that_cannot_be_written_does_not_stop_serving_and_lost_lines_are_counted(
    upstream: FakeUpstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    figures: Any,
    place: str,
) -> None:
    monkeypatch.setenv("HOSTILE_KEY", PROVIDER_KEY)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    log_file = "/dev/full" if place == "full disk" else str(blocker / "gateway.log")
    config = gateway_config(
        upstream.base_url, Path(log_file), ledger_file=str(tmp_path / "spend.ledger")
    )
    app = create_app(parse_config(config))
    count = scaled(200)
    with serve_in_thread(app) as (url, _):
        with httpx.Client(base_url=url, timeout=10) as client:
            statuses = [
                client.post(
                    "/v1/chat/completions",
                    json={
                        "model": "chat",
                        "messages": [{"role": "user", "content": directive(f"disk-{i}", "ok")}],
                    },
                ).status_code
                for i in range(count)
            ]
        writer = app.state.telemetry.writer
        assert wait_until(lambda: writer.dropped == count, timeout=5), writer.dropped
        with httpx.Client(base_url=url, timeout=10) as client:
            health = client.get("/healthz", params={"verbose": "1"}).json()
    figures.record(
        "telemetry",
        **{
            f"{place.replace(' ', '_')}_served": f"{statuses.count(200)}/{count}",
            f"{place.replace(' ', '_')}_lines_counted_lost": writer.dropped,
        },
    )
    assert statuses == [200] * count
    assert health["telemetry_lines_lost"] == count
