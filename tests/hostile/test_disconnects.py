"""Client disconnects: mid-stream, before the first token, non-streamed, and mid-body.

The gateway runs in-process under uvicorn on a real socket (so the test can read
``in_flight`` and the loop's tasks); clients are raw sockets that leave at the
chosen moment. For every one: the upstream connection is closed within a
second, ``in_flight`` comes back to zero, no task is left behind, and the
telemetry file has exactly one line per request, with the usage seen so far.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from src.config import parse_config
from src.edge.app import create_app
from tests.hostile.harness import PROVIDER_KEY, gateway_config, scaled
from tests.support.gateway import serve_in_thread
from tests.support.loopback import wait_until
from tests.support.upstream import FakeUpstream, directive

pytestmark = pytest.mark.slow

KINDS = ("mid_stream", "before_first_token", "non_streamed", "mid_body")


def _request(rid: str, kind: str) -> tuple[bytes, bytes]:
    """(head, body) of the request for ``kind``."""
    stream = kind in {"mid_stream", "before_first_token"}
    plan = {
        "mid_stream": "ok:60:0.05",
        "before_first_token": "delay:5,ok",
        "non_streamed": "delay:5,ok",
        "mid_body": "ok",
    }[kind]
    body = json.dumps(
        {
            "model": "chat",
            "stream": stream,
            "messages": [{"role": "user", "content": directive(rid, plan)}],
        }
    ).encode()
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    return head, body


async def _leave(port: int, rid: str, kind: str) -> tuple[float, int]:
    """Send the request, leave at the chosen moment; (when we left, content pieces seen)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head, body = _request(rid, kind)
    pieces = 0
    if kind == "mid_body":
        writer.write(head + body[: len(body) // 2])
        await writer.drain()
        await asyncio.sleep(0.2)
    else:
        writer.write(head + body)
        await writer.drain()
        if kind == "mid_stream":
            seen = b""
            while seen.count(b'"content":"p') < 3:
                seen += await asyncio.wait_for(reader.read(4096), 5)
            pieces = seen.count(b'"content":"p')
        else:
            await asyncio.sleep(0.3)
    writer.transport.abort()
    return time.monotonic(), pieces


async def _all(port: int, count: int) -> list[tuple[str, str, float, int]]:
    gate = asyncio.Semaphore(40)

    async def one(index: int) -> tuple[str, str, float, int]:
        kind = KINDS[index % len(KINDS)]
        rid = f"leave-{kind}-{index}"
        async with gate:
            left, pieces = await _leave(port, rid, kind)
        return rid, kind, left, pieces

    return await asyncio.gather(*(one(i) for i in range(count)))


async def _task_count() -> int:
    return len(asyncio.all_tasks())


@pytest.fixture
def app_config(upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("HOSTILE_KEY", PROVIDER_KEY)
    return parse_config(gateway_config(upstream.base_url, tmp_path / "gateway.log"))


def test_disconnects_close_the_upstream_and_leave_nothing_behind(
    upstream: FakeUpstream, app_config: Any, figures: Any
) -> None:
    app = create_app(app_config)
    count = scaled(200)
    with serve_in_thread(app) as (url, loop):
        port = int(url.rsplit(":", 1)[1])
        idle_tasks = asyncio.run_coroutine_threadsafe(_task_count(), loop).result(5)
        results = asyncio.run(_all(port, count))
        assert wait_until(lambda: app.state.gateway.process_in_flight.count == 0, timeout=5), (
            app.state.gateway.process_in_flight.count
        )
        in_flight_after = app.state.gateway.process_in_flight.count
        assert wait_until(
            lambda: asyncio.run_coroutine_threadsafe(_task_count(), loop).result(5) <= idle_tasks,
            timeout=5,
        )
        tasks_after = asyncio.run_coroutine_threadsafe(_task_count(), loop).result(5)

    slow_closes = []
    for rid, kind, left, _ in results:
        attempts = upstream.of(rid)
        if kind == "mid_body":
            assert attempts == [], "a request whose body never arrived reaches no upstream"
            continue
        (attempt,) = attempts
        assert attempt.done.wait(3), f"{rid}: the upstream still serves it"
        closed = attempt.closed_by_peer_at or attempt.ended_at
        assert closed is not None
        if closed - left > 1.0:
            slow_closes.append((rid, round(closed - left, 3)))

    lines = [json.loads(line) for line in Path(app_config.log_file).read_bytes().splitlines()]
    ids = [line["request_id"] for line in lines]
    disconnected = [line for line in lines if line["outcome"] == "client_disconnected"]
    mid_stream_lines = [line for line in disconnected if line["stream"] and line["ttft_ms"]]
    figures.record(
        "disconnects",
        disconnects=count,
        upstream_closed_later_than_1s=len(slow_closes),
        in_flight_after=in_flight_after,
        tasks_left_over=max(0, tasks_after - idle_tasks),
        telemetry_lines=len(lines),
        mid_stream_lines_with_usage=sum(
            1 for line in mid_stream_lines if (line["completion_tokens"] or 0) >= 2
        ),
    )
    assert not slow_closes, slow_closes
    assert len(lines) == count and len(set(ids)) == count
    assert len(disconnected) == count
    # 499 unless the stream's 200 had gone out already.
    assert all(line["status"] == (200 if line["ttft_ms"] else 499) for line in disconnected)
    seen = {kind: sum(1 for _, k, _, _ in results if k == kind) for kind in KINDS}
    assert len(mid_stream_lines) == seen["mid_stream"]
    # The usage seen: a stream cut after some chunks counts the text it relayed.
    assert all(line["completion_tokens"] >= 2 for line in mid_stream_lines)
    # Left before any answer: nothing was seen, so no usage is claimed (nor charged).
    assert all(not line["completion_tokens"] for line in disconnected if not line["ttft_ms"])
