"""Fake OpenAI chat-completions upstream for benchmarks.

Raw asyncio protocol on uvloop, no framework: the point is to answer far
faster than any gateway under test so that the gateway is always the
bottleneck. Replies are pre-serialised per (model, variant) and written with
one transport.write per request.

Paced streams (``--interval-ms``) stand in for a model generating tokens:
the role event at once, then ``--chunks`` content events one interval apart,
then the finish, usage and ``[DONE]`` events one interval after the last.
All connections share one millisecond ticker for their next events (no task
or timer per stream), so one core holds thousands of streams.

Usage: python bench/fake_upstream.py --port 9001 [--first-token-delay-ms 50]
                                     [--chunks 40 --interval-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import signal
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, cast

import orjson
import uvloop

CHAT_PATH = b"/v1/chat/completions"
MAX_HEAD = 64 * 1024
COMPLETION_ID = "chatcmpl-fakeupstream"
CREATED = int(time.time())
CONTENT_PIECES = ("Hello", " from", " the", " fake upstream.")
PROMPT_TOKENS = 8
TICK_S = 0.001  # resolution of paced and delayed segments
# Replies a connection may have waiting to be sent before it stops reading.
MAX_PENDING = 64
# The model name is echoed from the request, so the cache is keyed by
# client-controlled data: bound it so that odd clients cannot grow it forever.
MAX_CACHED_REPLIES = 512

# The bytes of one reply, in segments: the first is sent at once, the n-th
# (n >= 1) at first_token_delay + n * interval after the request. Splitting
# the reply this way is what lets the delay and the pacing sit at the right spots.
Reply = tuple[bytes, ...]


@dataclass(frozen=True)
class Shape:
    """What every streamed reply looks like and when its segments leave."""

    chunks: int = len(CONTENT_PIECES)  # content events per stream
    first_token_delay_s: float = 0.0
    interval_s: float = 0.0  # 0: all events at once, after the first-token delay

    @property
    def pieces(self) -> tuple[str, ...]:
        return tuple(itertools.islice(itertools.cycle(CONTENT_PIECES), self.chunks))

    @property
    def usage(self) -> dict[str, int]:
        completion = self.chunks + 1
        return {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": completion,
            "total_tokens": PROMPT_TOKENS + completion,
        }

    @property
    def instant(self) -> bool:
        return self.first_token_delay_s <= 0 and self.interval_s <= 0

    def offset_s(self, segment: int) -> float:
        return 0.0 if segment == 0 else self.first_token_delay_s + segment * self.interval_s


def completion_body(model: str, shape: Shape) -> bytes:
    return orjson.dumps(
        {
            "id": COMPLETION_ID,
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "".join(shape.pieces),
                        "refusal": None,
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": shape.usage,
        }
    )


def stream_events(model: str, include_usage: bool, shape: Shape) -> list[bytes]:
    def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None) -> bytes:
        payload: dict[str, Any] = {
            "id": COMPLETION_ID,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "choices": choices,
        }
        # OpenAI sends "usage": null on every chunk but the last one only
        # when the client asked for usage; mirror that.
        if include_usage:
            payload["usage"] = usage
        return b"data: " + orjson.dumps(payload) + b"\n\n"

    def choice(delta: dict[str, str], finish: str | None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    events = [chunk(choice({"role": "assistant", "content": ""}, None), None)]
    events += [chunk(choice({"content": piece}, None), None) for piece in shape.pieces]
    events.append(chunk(choice({}, "stop"), None))
    if include_usage:
        events.append(chunk([], shape.usage))
    events.append(b"data: [DONE]\n\n")
    return events


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def build_reply(
    model: str, stream: bool, include_usage: bool, keep_alive: bool, shape: Shape
) -> Reply:
    connection = b"" if keep_alive else b"Connection: close\r\n"
    if not stream:
        body = completion_body(model, shape)
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
            % (
                len(body),
                connection,
            )
        )
        return b"", head + body
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n%s\r\n" % connection
    )
    # One HTTP chunk per SSE event, like a real upstream flushing per token.
    events = [http_chunk(event) for event in stream_events(model, include_usage, shape)]
    if shape.interval_s <= 0:
        return head, b"".join(events) + b"0\r\n\r\n"
    # Paced: role event with the head, one content event per segment, the rest together.
    role, content, tail = events[0], events[1 : 1 + shape.chunks], events[1 + shape.chunks :]
    return head + role, *content, b"".join(tail) + b"0\r\n\r\n"


def error_reply(status: str, message: str, keep_alive: bool) -> Reply:
    body = orjson.dumps(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
    )
    connection = b"" if keep_alive else b"Connection: close\r\n"
    head = b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n" % (
        status.encode(),
        len(body),
        connection,
    )
    return b"", head + body


class ReplyCache:
    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self._replies: dict[tuple[str, bool, bool, bool], Reply] = {}

    def get(self, model: str, stream: bool, include_usage: bool, keep_alive: bool) -> Reply:
        key = (model, stream, include_usage, keep_alive)
        reply = self._replies.get(key)
        if reply is None:
            reply = build_reply(model, stream, include_usage, keep_alive, self.shape)
            if len(self._replies) < MAX_CACHED_REPLIES:
                self._replies[key] = reply
        return reply


def reply_for(cache: ReplyCache, body: bytes, keep_alive: bool) -> Reply:
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError:
        return error_reply("400 Bad Request", "body is not valid JSON", keep_alive)
    if not isinstance(request, dict):
        return error_reply("400 Bad Request", "body must be a JSON object", keep_alive)
    model = request.get("model")
    stream = request.get("stream") is True
    options = request.get("stream_options")
    include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
    return cache.get(
        model if isinstance(model, str) else "fake-model", stream, include_usage, keep_alive
    )


class Head:
    """What the parser kept of a request head while its body is arriving."""

    __slots__ = ("error", "keep_alive", "length")

    def __init__(self, keep_alive: bool, length: int, error: Reply | None = None) -> None:
        self.keep_alive = keep_alive
        self.length = length
        self.error = error


def unframeable(status: str, message: str) -> Head:
    """A request whose end cannot be found: answer, then close the connection."""
    return Head(False, 0, error_reply(status, message, False))


def parse_head(raw: bytes) -> Head:
    lines = raw.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return unframeable("400 Bad Request", "malformed request line")
    method, target, version = parts
    keep_alive = version == b"HTTP/1.1"
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == b"content-length":
            if not value.isdigit():
                return unframeable("400 Bad Request", "bad Content-Length")
            length = int(value)
        elif name == b"connection":
            keep_alive = value != b"close" if version == b"HTTP/1.1" else value == b"keep-alive"
        elif name == b"transfer-encoding":
            # Benchmark clients (wrk, httpx, aiohttp) send Content-Length for
            # JSON bodies; refusing chunked bodies keeps the parser tiny.
            return unframeable("501 Not Implemented", "chunked request bodies are not supported")
    # Wrong path or method: the framing is fine, so the connection stays usable.
    if target.partition(b"?")[0] != CHAT_PATH:
        return Head(keep_alive, length, error_reply("404 Not Found", "unknown path", keep_alive))
    if method != b"POST":
        return Head(
            keep_alive, length, error_reply("405 Method Not Allowed", "use POST", keep_alive)
        )
    return Head(keep_alive, length)


class Pacer:
    """Sends every connection's timed segments from one ticker of
    ``TICK_S``: a loop timer per segment (uvloop gives each its own libuv
    timer) would cost more than the write it schedules. A segment leaves at
    the first tick at or after its time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._due: dict[int, list[UpstreamProtocol]] = {}
        self._done = self._tick_now()  # ticks up to this one have been sent
        self._timer: asyncio.TimerHandle | None = None
        self._wake_tick = 0
        self._running = False

    def now(self) -> float:
        return self._loop.time()

    def _tick_now(self) -> int:
        return math.floor(self._loop.time() / TICK_S + 1e-6)  # the epsilon absorbs float rounding

    def at(self, when: float, protocol: UpstreamProtocol) -> None:
        """Call ``protocol.send_due()`` at loop time ``when``."""
        tick = max(math.ceil(when / TICK_S), self._done + 1)
        due = self._due.get(tick)
        if due is None:
            self._due[tick] = [protocol]
        else:
            due.append(protocol)
        # While running, the run itself sets the next wake-up once it is done.
        if not self._running and (self._timer is None or tick < self._wake_tick):
            self._wake_at(tick)

    def _run(self) -> None:
        self._timer = None
        now = self._done = self._tick_now()  # what the sends add lands on later ticks
        self._running = True
        try:
            for tick in sorted(tick for tick in self._due if tick <= now):
                for protocol in self._due.pop(tick):
                    protocol.send_due()
        finally:
            self._running = False
        if self._due:
            self._wake_at(min(self._due))

    def _wake_at(self, tick: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._wake_tick = tick
        # Half a tick late: uvloop truncates a timer's delay to whole
        # milliseconds, so a timer set for the tick itself can fire while its
        # clock still reads the tick before, and nothing would be due yet.
        self._timer = self._loop.call_at((tick + 0.5) * TICK_S, self._run)


class UpstreamProtocol(asyncio.Protocol):
    def __init__(self, cache: ReplyCache, pacer: Pacer) -> None:
        self._cache = cache
        self._shape = cache.shape
        self._pacer = pacer
        self._buf = bytearray()
        self._head: Head | None = None
        self._transport: asyncio.Transport | None = None
        self._closing = False  # no more requests are read; close once the replies are out
        self._writing_paused = False
        # Replies not fully sent yet, oldest first; the first is in progress.
        # Replies to pipelined requests must leave in request order.
        self._pending: deque[Reply] = deque()
        self._segment = 0  # next segment of the reply in progress
        self._started = 0.0  # loop time the reply in progress started

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport implements asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        # A tick still due finds the transport closed and does nothing.
        self._pending.clear()

    # Backpressure: a client that pipelines without reading must not make
    # us buffer replies without bound.
    def pause_writing(self) -> None:
        self._writing_paused = True
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._resume_reading()

    def _resume_reading(self) -> None:
        if (
            self._transport is not None
            and not self._closing
            and not self._writing_paused
            and len(self._pending) < MAX_PENDING
        ):
            self._transport.resume_reading()
            if self._buf:
                self.data_received(b"")  # requests that arrived while paused

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        buf = self._buf
        buf += data
        pos = 0
        immediate: list[bytes] = []
        while len(self._pending) < MAX_PENDING:
            if self._head is None:
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    if len(buf) - pos > MAX_HEAD:
                        status = "431 Request Header Fields Too Large"
                        self._send(immediate, error_reply(status, "head too large", False))
                        self._close_after_writes(immediate)
                        return
                    break
                self._head = parse_head(bytes(buf[pos:end]))
                pos = end + 4
            head = self._head
            if len(buf) - pos < head.length:
                break
            body = bytes(buf[pos : pos + head.length])
            pos += head.length
            self._head = None
            reply = head.error or reply_for(self._cache, body, head.keep_alive)
            self._send(immediate, reply)
            if not head.keep_alive:
                self._close_after_writes(immediate)
                return
        else:
            # Too many replies still pacing out: read on once they are sent.
            if self._transport is not None:
                self._transport.pause_reading()
        del buf[:pos]
        if immediate and self._transport is not None:
            self._transport.write(b"".join(immediate))

    def _send(self, immediate: list[bytes], reply: Reply) -> None:
        if self._pending:
            self._pending.append(reply)
        elif self._shape.instant:
            immediate.extend(reply)
        else:
            # Segment 0 joins this read's other output, which data_received
            # writes before any timer can fire, so the order holds.
            immediate.append(reply[0])
            self._pending.append(reply)
            self._schedule(first=True)

    def _schedule(self, first: bool) -> None:
        if first:
            self._segment = 1
            self._started = self._pacer.now()
        # Absolute times from the reply's start, so lateness does not accumulate.
        self._pacer.at(self._started + self._shape.offset_s(self._segment), self)

    def send_due(self) -> None:
        """Send the next segment of the reply in progress (the pacer's call)."""
        transport = self._transport
        if transport is None or transport.is_closing() or not self._pending:
            return
        reply = self._pending[0]
        transport.write(reply[self._segment])
        self._segment += 1
        if self._segment < len(reply):
            self._schedule(first=False)
            return
        self._pending.popleft()
        if self._pending:
            transport.write(self._pending[0][0])
            self._schedule(first=True)
        elif self._closing:
            transport.close()
        else:
            self._resume_reading()

    def _close_after_writes(self, immediate: list[bytes]) -> None:
        self._closing = True
        transport = self._transport
        if transport is None:
            return
        transport.pause_reading()
        if immediate:
            transport.write(b"".join(immediate))
        if not self._pending:
            transport.close()


async def serve(host: str, port: int, shape: Shape) -> None:
    loop = asyncio.get_running_loop()
    cache = ReplyCache(shape)
    pacer = Pacer(loop)
    server = await loop.create_server(
        lambda: UpstreamProtocol(cache, pacer), host, port, backlog=4096
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"fake upstream listening on http://{host}:{port}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--first-token-delay-ms", type=float, default=0.0)
    parser.add_argument(
        "--chunks",
        type=int,
        default=len(CONTENT_PIECES),
        help=f"content events per stream (default {len(CONTENT_PIECES)})",
    )
    parser.add_argument(
        "--interval-ms",
        type=float,
        default=0.0,
        help="pace streams: one content event every this many ms (default 0: all at once)",
    )
    args = parser.parse_args()
    if args.chunks < 1 or args.interval_ms < 0 or args.first_token_delay_ms < 0:
        parser.error("--chunks must be >= 1, --interval-ms and --first-token-delay-ms >= 0")
    shape = Shape(args.chunks, args.first_token_delay_ms / 1000, args.interval_ms / 1000)
    uvloop.run(serve(args.host, args.port, shape))


if __name__ == "__main__":
    main()
