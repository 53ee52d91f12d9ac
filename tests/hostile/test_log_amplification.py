"""Log amplification: what a client sends cannot make the telemetry line long, nor many.

Every client-supplied string in a telemetry line is cut at 256 characters (and
marked with its length); a refusal of a known client (an unknown model, a bad
body) counts against its request limit, so past the limit a client gets 429s,
at the rate its limit allows, whatever it sends.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.hostile.faulty_upstream import FaultyUpstream
from tests.hostile.harness import CLIENT_KEY, Exposure, HostileGateway, gateway_config, scaled

FLOOD_KEY = "gw-flood-" + secrets.token_urlsafe(16)
BODIES_KEY = "gw-bodies-" + secrets.token_urlsafe(16)
FLOOD_LIMIT = 20
HUGE = 1_040_000
LINE_BOUND = 4096  # bytes: a line of the longest fields the gateway writes, with room to spare


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def logged(
    upstream: FaultyUpstream, exposure: Exposure, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostileGateway]:
    home = tmp_path_factory.mktemp("hostile-log-amplification")
    config = gateway_config(upstream.base_url, home / "gateway.log")
    config["clients"] = {
        "alice": {"key_sha256": _digest(CLIENT_KEY)},
        "flooder": {
            "key_sha256": _digest(FLOOD_KEY),
            "rate_limit": {"requests_per_minute": FLOOD_LIMIT},
        },
        "bodies": {"key_sha256": _digest(BODIES_KEY), "rate_limit": {"requests_per_minute": 5}},
    }
    process = HostileGateway(home, config).start()
    exposure.files += [process.log_file, process.stdout_file, process.stderr_file]
    yield process
    process.stop()


def _lines(gateway: HostileGateway, at_least: int = 0) -> list[bytes]:
    """The log's lines, once there are ``at_least`` of them (the writer is a thread)."""
    deadline = time.monotonic() + 10
    while True:
        lines = gateway.log_file.read_bytes().splitlines() if gateway.log_file.exists() else []
        if len(lines) >= at_least or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_a_huge_client_string_makes_a_bounded_line(
    logged: HostileGateway, exposure: Exposure, figures: Any
) -> None:
    before = len(_lines(logged))
    headers = {"authorization": f"Bearer {CLIENT_KEY}", "x-use-case": "u" * 60_000}
    model = "m" * HUGE
    bodies = {
        "/v1/chat/completions": {"model": model, "messages": [{"role": "user", "content": "x"}]},
        "/v1/chat": {"model": model, "messages": [{"role": "user", "content": "x"}]},
        "/v1/embeddings": {"model": model, "input": "x"},
        "/v1/messages": {
            "model": model,
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}],
        },
    }
    with httpx.Client(base_url=logged.base_url, headers=headers, timeout=15) as client:
        for path, body in bodies.items():
            response = client.post(path, json=body)
            exposure.answer(response)
            assert response.status_code == 404, (path, response.text[:300])
            assert len(response.content) < LINE_BOUND
    lines = _lines(logged, before + len(bodies))[before:]
    longest = max(len(line) for line in lines)
    figures.record(
        "log_amplification",
        client_string_chars=HUGE,
        longest_line_bytes=longest,
        line_bound_bytes=LINE_BOUND,
    )
    assert len(lines) == len(bodies)
    assert longest < LINE_BOUND, longest


def test_refusals_of_a_known_client_count_against_its_request_limit(
    logged: HostileGateway, exposure: Exposure, figures: Any
) -> None:
    before = len(_lines(logged))
    sent = FLOOD_LIMIT + scaled(30)
    statuses = []
    headers = {"authorization": f"Bearer {FLOOD_KEY}"}
    body = {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}
    with httpx.Client(base_url=logged.base_url, headers=headers, timeout=15) as client:
        for _ in range(sent):
            response = client.post("/v1/chat/completions", json=body)
            exposure.answer(response)
            statuses.append((response.status_code, response.json()["error"]["type"]))
    logged_bytes = sum(len(line) for line in _lines(logged, before + sent)[before:])
    not_found = statuses.count((404, "model_not_found"))
    limited = statuses.count((429, "rate_limit_exceeded"))
    figures.record(
        "log_amplification",
        unknown_model_flood=sent,
        answered_404_before_429=not_found,
        log_bytes_per_refusal=round(logged_bytes / sent),
    )
    assert not_found == FLOOD_LIMIT, statuses
    assert limited == sent - FLOOD_LIMIT, statuses
    assert logged_bytes < sent * LINE_BOUND


def test_bad_bodies_of_a_known_client_use_up_its_requests(
    logged: HostileGateway, exposure: Exposure
) -> None:
    headers = {"authorization": f"Bearer {BODIES_KEY}"}
    with httpx.Client(base_url=logged.base_url, headers=headers, timeout=15) as client:
        bad = [
            client.post("/v1/chat/completions", content=b"{nope"),
            client.post("/v1/chat/completions", json={"model": "chat"}),
            client.post("/v1/messages", json={"model": "chat", "messages": []}),
            client.post("/v1/embeddings", json={"model": "chat", "input": 5}),
            client.post("/v1/chat/completions", json={"model": "nope", "messages": []}),
        ]
        good = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}
        after = client.post("/v1/chat/completions", json=good)
    for response in (*bad, after):
        exposure.answer(response)
    assert [r.status_code for r in bad] == [400] * 5
    assert after.status_code == 429, after.text
    assert after.json()["error"]["type"] == "rate_limit_exceeded"
