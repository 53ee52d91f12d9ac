"""Over-limit clients, explain, and large bodies: what a client costs the event loop.

A client already over its request limit is refused before its body is read
(the answer comes while the body is still on its way); ``/v1/explain`` counts
like any call; a large valid body is decoded, checked and counted in slices, so
it holds the event loop for about one decode of it, not for its validation.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import socket
import statistics
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.hostile.faulty_upstream import FaultyUpstream
from tests.hostile.harness import Exposure, HostileGateway, gateway_config, is_envelope

OVER_KEY = "gw-over-" + secrets.token_urlsafe(16)
EXPLAIN_KEY = "gw-explain-" + secrets.token_urlsafe(16)
BIG_MESSAGES = 80_000  # {"role":"u"} each: just under the default 1 MiB body limit


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def limited(
    upstream: FaultyUpstream, exposure: Exposure, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostileGateway]:
    home = tmp_path_factory.mktemp("hostile-over-limit")
    config = gateway_config(upstream.base_url, home / "gateway.log")
    config["clients"] = {
        "over": {"key_sha256": _digest(OVER_KEY), "rate_limit": {"requests_per_minute": 3}},
        "explainer": {
            "key_sha256": _digest(EXPLAIN_KEY),
            "rate_limit": {"requests_per_minute": 3},
        },
    }
    process = HostileGateway(home, config).start()
    exposure.files += [process.log_file, process.stdout_file, process.stderr_file]
    yield process
    process.stop()


def _big_body() -> bytes:
    return orjson.dumps({"model": "nope", "messages": [{"role": "u"}] * BIG_MESSAGES})


def _answer_before_the_body(port: int, key: str, path: str) -> bytes:
    """Send a head announcing a large body and only its first bytes; what comes back."""
    body = _big_body()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head + body[:1000])
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pass
    return answer


def test_a_client_over_its_limit_is_refused_before_its_body_is_read(
    limited: HostileGateway, exposure: Exposure, figures: Any
) -> None:
    headers = {"authorization": f"Bearer {OVER_KEY}"}
    small = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}
    with httpx.Client(base_url=limited.base_url, headers=headers, timeout=10) as client:
        statuses = [client.post("/v1/chat/completions", json=small).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429], statuses
        # with its whole body sent, an over-limit request is answered quickly
        started = time.perf_counter()
        full = [
            client.post(
                "/v1/chat/completions",
                content=_big_body(),
                headers={"content-type": "application/json"},
            )
            for _ in range(5)
        ]
        per_refusal_ms = (time.perf_counter() - started) * 1000 / len(full)
    for response in full:
        exposure.answer(response)
        assert response.status_code == 429, response.text
    for path in ("/v1/chat/completions", "/v1/messages", "/v1/embeddings", "/v1/chat"):
        answer = _answer_before_the_body(limited.port, OVER_KEY, path)
        exposure.text(answer.decode("latin-1"))
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 429"), (path, answer[:300])
        assert is_envelope(429, body, path)
    figures.record(
        "over_limit",
        over_limit_body_messages=BIG_MESSAGES,
        over_limit_refusal_ms=round(per_refusal_ms, 1),
        refused_before_body_read=True,
    )


def test_explain_counts_against_the_request_limit(
    limited: HostileGateway, exposure: Exposure
) -> None:
    headers = {"authorization": f"Bearer {EXPLAIN_KEY}"}
    body = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}
    with httpx.Client(base_url=limited.base_url, headers=headers, timeout=10) as client:
        explained = [client.post("/v1/explain", json=body) for _ in range(3)]
        over = client.post("/v1/explain", json=body)
        chat = client.post("/v1/chat/completions", json=body)
    for response in (*explained, over, chat):
        exposure.answer(response)
    assert [r.status_code for r in explained] == [200] * 3
    assert explained[-1].json()["decision"]["allowed"] is False  # the 3rd used the last one
    assert over.status_code == 429, over.text
    assert over.json()["error"]["type"] == "rate_limit_exceeded"
    assert chat.status_code == 429


async def _ping(client: httpx.AsyncClient, done: asyncio.Event, latencies: list[float]) -> None:
    while not done.is_set():
        started = time.perf_counter()
        await client.get("/healthz")
        latencies.append((time.perf_counter() - started) * 1000)


async def _stalls(base_url: str, body: bytes, rounds: int) -> list[float]:
    """For each big body sent: the slowest small request another client made meanwhile (ms)."""
    worst: list[float] = []
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=30) as big,
        httpx.AsyncClient(base_url=base_url, timeout=30) as other,
    ):
        for _ in range(rounds):
            done = asyncio.Event()
            latencies: list[float] = []

            pinger = asyncio.create_task(_ping(other, done, latencies))
            await asyncio.sleep(0.05)
            response = await big.post(
                "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code == 404, response.text  # decoded, validated, counted
            done.set()
            await pinger
            worst.append(max(latencies))
    return worst


def test_a_large_valid_body_does_not_hold_the_loop_for_its_validation(
    gateway: HostileGateway, figures: Any
) -> None:
    body = _big_body()
    decodes = []
    for _ in range(5):
        started = time.perf_counter()
        orjson.loads(body)
        decodes.append((time.perf_counter() - started) * 1000)
    decode_ms = statistics.median(decodes)
    stalls = asyncio.run(_stalls(gateway.base_url, body, 7))
    stall_ms = statistics.median(stalls)
    figures.record(
        "over_limit",
        large_body_messages=BIG_MESSAGES,
        large_body_decode_ms=round(decode_ms, 1),
        others_worst_latency_ms=round(stall_ms, 1),
    )
    # Validating and counting 80,000 messages at once held the loop for several decodes.
    assert stall_ms < 3 * decode_ms + 15, (stalls, decode_ms)
