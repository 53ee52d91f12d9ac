"""CPU cost of the stream relay, measured in-process: per stream and per relayed chunk.

    python -m bench.relay_cost [--streams 200] [--chunks 40] [--concurrency 100]

Runs the gateway app (its real lifespan, pipeline, provider adapter and
encoders) under an ASGI driver, against an upstream that lives in memory (an
httpx transport whose streamed body hands out one SSE event per step of the
event loop, as a paced upstream's reads would). No sockets, no uvicorn: what
is measured is the gateway's own Python work, which a loaded machine disturbs
far less than the socket-level benchmark (``run.py --streams``). Each setting
runs five times; the best run counts. The cost of one stream is measured with
``--chunks`` content events and with none: the difference divided by
``--chunks`` is the cost of a relayed chunk, the rest the cost of a stream.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvloop

from src.config import parse_config
from src.edge.app import GatewayApp, create_app

MODEL = "fake-model"
BODY = orjson.dumps(
    {
        "model": "default-chat",
        "messages": [{"role": "user", "content": "Say something."}],
        "stream": True,
    }
)


def sse_events(chunks: int) -> list[bytes]:
    """What the bench's fake upstream sends: role, content, finish, usage, [DONE]."""

    def event(choices: list[dict[str, Any]], usage: dict[str, int] | None) -> bytes:
        chunk = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": MODEL,
            "choices": choices,
            "usage": usage,
        }
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def choice(delta: dict[str, str], finish: str | None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    events = [event(choice({"role": "assistant", "content": ""}, None), None)]
    events += [event(choice({"content": "token "}, None), None) for _ in range(chunks)]
    events.append(event(choice({}, "stop"), None))
    events.append(event([], {"prompt_tokens": 9, "completion_tokens": chunks, "total_tokens": 9}))
    events.append(b"data: [DONE]\n\n")
    return events


class PacedBody(httpx.AsyncByteStream):
    """The events one per step of the event loop, as separate reads would bring them."""

    def __init__(self, events: list[bytes]) -> None:
        self._events = events

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for event in self._events:
            await asyncio.sleep(0)
            yield event


class MemoryUpstream(httpx.AsyncBaseTransport):
    def __init__(self, chunks: int) -> None:
        self.chunks = chunks

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "text/event-stream"}
        return httpx.Response(200, headers=headers, stream=PacedBody(sse_events(self.chunks)))


def config(log_file: Path) -> Any:
    return parse_config(
        {
            "providers": {
                "upstream": {
                    "type": "openai",
                    "base_url": "http://127.0.0.1:9/v1",
                    "api_key_env": "BENCH_UPSTREAM_KEY",
                }
            },
            "aliases": {"default-chat": {"provider": "upstream", "model": MODEL}},
            "rate_limit": {
                "requests_per_minute": 100_000_000,
                "tokens_per_minute": 100_000_000_000,
            },
            "log_file": str(log_file),
        }
    )


async def one_stream(app: GatewayApp) -> int:
    """One streamed chat through the app; the bytes of the answer."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    sent = [False]
    done = asyncio.get_running_loop().create_future()
    received = 0

    async def receive() -> dict[str, Any]:
        if not sent[0]:
            sent[0] = True
            return {"type": "http.request", "body": BODY, "more_body": False}
        await done  # the client stays until the answer has ended
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal received
        received += len(message.get("body", b""))
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set_result(None)

    await app(scope, receive, send)
    return received


async def run(app: GatewayApp, streams: int, concurrency: int) -> float:
    """CPU seconds for ``streams`` streams, ``concurrency`` at once."""
    left = streams

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one_stream(app)

    started = time.process_time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return time.process_time() - started


async def measure(chunks: int, streams: int, concurrency: int, tmp: Path) -> float:
    """Best CPU µs per stream of five runs."""
    app = create_app(config(tmp / "gw.log"), transport=lambda _: MemoryUpstream(chunks))
    async with app.lifespan():
        await run(app, 50, 10)  # warm-up
        best = min([await run(app, streams, concurrency) for _ in range(5)])
    return best / streams * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=200, help="streams per run")
    parser.add_argument("--chunks", type=int, default=40, help="content events per stream")
    parser.add_argument("--concurrency", type=int, default=100, help="streams at once")
    args = parser.parse_args()
    os.environ.setdefault("BENCH_UPSTREAM_KEY", "bench-key")
    # The telemetry lines also go to stdout: not between the figures.
    with (
        tempfile.TemporaryDirectory() as folder,
        open(os.devnull, "w") as null,
        contextlib.redirect_stdout(null),
    ):
        tmp = Path(folder)
        full = uvloop.run(measure(args.chunks, args.streams, args.concurrency, tmp))
        empty = uvloop.run(measure(0, args.streams, args.concurrency, tmp))
    per_chunk = (full - empty) / args.chunks
    print(f"stream of {args.chunks} chunks: {full:,.0f} µs CPU")
    print(f"stream of 0 chunks:  {empty:,.0f} µs CPU")
    print(f"per relayed chunk:   {per_chunk:.1f} µs CPU")


if __name__ == "__main__":
    main()
