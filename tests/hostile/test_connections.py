"""Connections: an early refusal closes at once; pipelined requests never mix answers.

A refusal sent before its request's body arrived (413 over ``max_body_bytes``,
401, 405, an absurd ``Content-Length``) ends the connection after a short,
bounded linger instead of reading and dropping whatever the client goes on
sending. A request pipelined behind a streamed answer is answered after it
(or refused after it): the bytes of two answers never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.hostile.faulty_upstream import directive
from tests.hostile.harness import CLIENT_KEY, HostileGateway, is_envelope

CHUNK = 64 * 1024
ATTACK_S = 6.0
ACCEPTED_BOUND = 32 * 1024 * 1024  # what the kernel's buffers and the linger may take


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _stream_body(port: int, head: bytes) -> tuple[bytes, int, float]:
    """Send ``head``, then chunks as fast as the gateway takes them; (answer, bytes the
    gateway took, seconds until it closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    answer = bytearray()

    async def read() -> None:
        try:
            while chunk := await reader.read(65536):
                answer.extend(chunk)
        except ConnectionError:
            pass

    reading = asyncio.create_task(read())
    sent = 0
    frame = b"%x\r\n" % CHUNK + b"a" * CHUNK + b"\r\n"
    try:
        writer.write(head)
        while time.monotonic() - started < ATTACK_S:
            writer.write(frame)
            await writer.drain()
            sent += CHUNK
    except ConnectionError:
        pass
    closed_after = time.monotonic() - started
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(reading, 5)
    writer.transport.abort()
    return bytes(answer), sent, closed_after


def _head(method: str, path: str, extra: str = "") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n{extra}\r\n"
    ).encode()


KEY = f"Authorization: Bearer {CLIENT_KEY}\r\n"
CASES = {
    "413 chunked over max_body_bytes": (
        _head("POST", "/v1/chat/completions", KEY + "Transfer-Encoding: chunked\r\n"),
        413,
    ),
    "413 absurd content-length": (
        _head("POST", "/v1/chat/completions", KEY + "Content-Length: 999999999999999999\r\n"),
        413,
    ),
    "401 no key": (_head("POST", "/v1/messages", "Transfer-Encoding: chunked\r\n"), 401),
    "405 wrong method": (
        _head("PUT", "/v1/chat/completions", "Transfer-Encoding: chunked\r\n"),
        405,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_refusal_before_the_body_closes_the_connection_at_once(
    keyed_gateway: HostileGateway, figures: Any, case: str
) -> None:
    head, status = CASES[case]
    assert keyed_gateway.process is not None
    pid = keyed_gateway.process.pid
    cpu_before, rss_before = _cpu_s(pid), _rss_mb(pid)
    answer, sent, closed_after = asyncio.run(_stream_body(keyed_gateway.port, head))
    cpu, rss_growth = _cpu_s(pid) - cpu_before, _rss_mb(pid) - rss_before
    answer_head, _, body = answer.partition(b"\r\n\r\n")
    figures.add("early_refusals", cases=1)
    figures.maximum(
        "early_refusals",
        most_bytes_taken=sent,
        most_seconds_open=round(closed_after, 2),
        most_cpu_s=round(cpu, 2),
        most_rss_growth_mb=round(rss_growth, 1),
    )
    assert answer_head.startswith(b"HTTP/1.1 %d" % status), answer[:300]
    path = "/v1/messages" if b"/v1/messages" in head else "/v1/chat/completions"
    length = int(answer_head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    assert is_envelope(status, body[:length], path), body[:300]
    assert sent < ACCEPTED_BOUND, (sent, closed_after)
    assert closed_after < ATTACK_S - 1, (sent, closed_after)
    assert cpu < 1.0, cpu
    assert rss_growth < 64, rss_growth


# -- pipelining ----------------------------------------------------------------------


def _responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a connection's bytes into HTTP/1.1 responses (status, headers, decoded body)."""
    found = []
    rest = raw
    while rest:
        head, sep, rest = rest.partition(b"\r\n\r\n")
        assert sep, f"a truncated head: {head[:200]!r}"
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 "), f"not a response: {head[:200]!r}"
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if headers.get("transfer-encoding") == "chunked":
            body = bytearray()
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line, 16)  # raises on anything that is not a chunk size
                body += rest[:size]
                assert rest[size : size + 2] == b"\r\n", f"a broken chunk: {rest[:200]!r}"
                rest = rest[size + 2 :]
                if size == 0:
                    break
            found.append((int(lines[0].split()[1]), headers, bytes(body)))
        else:
            length = int(headers.get("content-length", "0"))
            found.append((int(lines[0].split()[1]), headers, rest[:length]))
            rest = rest[length:]
    return found


async def _pipelined(port: int, second: bytes, answers: int = 2, wait_s: float = 12) -> bytes:
    stream = orjson.dumps(
        {
            "model": "chat",
            "stream": True,
            "messages": [{"role": "user", "content": directive("pipe-stream", "ok:8:0.4")}],
        }
    )
    first = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(stream) + stream
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(first + second)  # one write: the second request is pipelined
    raw = bytearray()
    try:
        async with asyncio.timeout(wait_s):
            while chunk := await reader.read(65536):
                raw.extend(chunk)
                if raw.count(b"HTTP/1.1 ") >= answers and raw.endswith((b"}", b"0\r\n\r\n")):
                    try:
                        if len(_responses(bytes(raw))) >= answers:
                            break
                    except (AssertionError, ValueError):
                        pass
    except (TimeoutError, ConnectionError):
        pass
    writer.transport.abort()
    return bytes(raw)


def _check_stream(response: tuple[int, dict[str, str], bytes]) -> None:
    status, headers, body = response
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    events = [e for e in body.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]", body[-300:]
    for event in events[:-1]:
        assert event.startswith(b"data: ")
        json.loads(event[6:])


def test_a_request_pipelined_behind_a_stream_is_answered_after_it(
    gateway: HostileGateway, figures: Any
) -> None:
    big = orjson.dumps(
        {
            "model": "chat",
            "messages": [
                {"role": "user", "content": directive("pipe-big", "ok") + " " + "x" * 900_000}
            ],
        }
    )
    second = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(big) + big
    )
    raw = asyncio.run(_pipelined(gateway.port, second))
    responses = _responses(raw)
    figures.add("pipelining", cases=1)
    assert len(responses) == 2, raw[:500]
    _check_stream(responses[0])
    status, _, body = responses[1]
    assert status == 200, body[:300]
    assert json.loads(body)["choices"][0]["message"]["content"]
    figures.add("pipelining", answered_after_the_stream=1)


@pytest.mark.parametrize(
    ("label", "second", "status"),
    [
        (
            "oversized head",
            b"POST /v1/chat HTTP/1.1\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
            431,
        ),
        ("garbage", b"NOT HTTP AT ALL\r\n\r\n", 400),
        (
            "slow body",
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n{",
            408,
        ),
    ],
)
def test_a_pipelined_request_refused_behind_a_stream_is_refused_after_it(
    gateway: HostileGateway, figures: Any, label: str, second: bytes, status: int
) -> None:
    raw = asyncio.run(_pipelined(gateway.port, second))
    responses = _responses(raw)
    figures.add("pipelining", cases=1)
    assert len(responses) == 2, (label, raw[:500])
    _check_stream(responses[0])
    assert responses[1][0] == status, (label, responses[1])
    assert is_envelope(status, responses[1][2], "/v1/chat")
    figures.add("pipelining", answered_after_the_stream=1)


def test_answers_keep_their_order_when_a_refused_head_follows_two_requests(
    gateway: HostileGateway, figures: Any
) -> None:
    small = orjson.dumps(
        {"model": "chat", "messages": [{"role": "user", "content": directive("pipe-2", "ok")}]}
    )
    second = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(small) + small + b"NOT HTTP AT ALL\r\n\r\n"
    )
    raw = asyncio.run(_pipelined(gateway.port, second, answers=3))
    responses = _responses(raw)
    figures.add("pipelining", cases=1)
    assert [status for status, _, _ in responses] == [200, 200, 400], raw[:500]
    _check_stream(responses[0])
    assert json.loads(responses[1][2])["choices"]
    figures.add("pipelining", answered_after_the_stream=1)
