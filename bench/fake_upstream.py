"""Fake OpenAI chat-completions upstream for benchmarks.

Raw asyncio protocol on uvloop, no framework: the point is to answer far
faster than any gateway under test so that the gateway is always the
bottleneck. Replies are pre-serialised per (model, variant) and written with
one transport.write per request.

Usage: python bench/fake_upstream.py --port 9001 [--first-token-delay-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from typing import Any, cast

import orjson
import uvloop

CHAT_PATH = b"/v1/chat/completions"
MAX_HEAD = 64 * 1024
COMPLETION_ID = "chatcmpl-fakeupstream"
CREATED = int(time.time())
CONTENT_PIECES = ("Hello", " from", " the", " fake upstream.")
USAGE = {"prompt_tokens": 8, "completion_tokens": 5, "total_tokens": 13}
# The model name is echoed from the request, so the cache is keyed by
# client-controlled data: bound it so that odd clients cannot grow it forever.
MAX_CACHED_REPLIES = 512

# (bytes sent before the first token, bytes sent after it). Splitting the
# reply this way is what lets --first-token-delay-ms sit at the right spot.
Reply = tuple[bytes, bytes]


def completion_body(model: str) -> bytes:
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
                        "content": "".join(CONTENT_PIECES),
                        "refusal": None,
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    )


def stream_events(model: str, include_usage: bool) -> list[bytes]:
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
    events += [chunk(choice({"content": piece}, None), None) for piece in CONTENT_PIECES]
    events.append(chunk(choice({}, "stop"), None))
    if include_usage:
        events.append(chunk([], USAGE))
    events.append(b"data: [DONE]\n\n")
    return events


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def build_reply(model: str, stream: bool, include_usage: bool, keep_alive: bool) -> Reply:
    connection = b"" if keep_alive else b"Connection: close\r\n"
    if not stream:
        body = completion_body(model)
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
    events = b"".join(http_chunk(event) for event in stream_events(model, include_usage))
    return head, events + b"0\r\n\r\n"


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
    def __init__(self) -> None:
        self._replies: dict[tuple[str, bool, bool, bool], Reply] = {}

    def get(self, model: str, stream: bool, include_usage: bool, keep_alive: bool) -> Reply:
        key = (model, stream, include_usage, keep_alive)
        reply = self._replies.get(key)
        if reply is None:
            reply = build_reply(model, stream, include_usage, keep_alive)
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


class UpstreamProtocol(asyncio.Protocol):
    def __init__(self, cache: ReplyCache, delay_s: float) -> None:
        self._cache = cache
        self._delay_s = delay_s
        self._buf = bytearray()
        self._head: Head | None = None
        self._transport: asyncio.Transport | None = None
        self._closing = False
        # Only used with a first-token delay: replies of pipelined requests
        # must leave in request order, so one writer task drains a queue.
        self._queue: asyncio.Queue[Reply | None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport implements asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        if self._delay_s > 0:
            self._queue = asyncio.Queue()
            asyncio.get_running_loop().create_task(
                self._delayed_writer(self._transport, self._queue)
            )

    def connection_lost(self, exc: Exception | None) -> None:
        if self._queue is not None:
            self._queue.put_nowait(None)

    # Backpressure: a client that pipelines without reading must not make
    # us buffer replies without bound.
    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and not self._closing:
            self._transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        buf = self._buf
        buf += data
        pos = 0
        immediate: list[bytes] = []
        while True:
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
        del buf[:pos]
        if immediate and self._transport is not None:
            self._transport.write(b"".join(immediate))

    def _send(self, immediate: list[bytes], reply: Reply) -> None:
        if self._queue is None:
            immediate.append(reply[0])
            immediate.append(reply[1])
        else:
            self._queue.put_nowait(reply)

    def _close_after_writes(self, immediate: list[bytes]) -> None:
        self._closing = True
        transport = self._transport
        if transport is None:
            return
        transport.pause_reading()
        if immediate:
            transport.write(b"".join(immediate))
        if self._queue is None:
            transport.close()
        else:
            self._queue.put_nowait(None)

    async def _delayed_writer(
        self, transport: asyncio.Transport, queue: asyncio.Queue[Reply | None]
    ) -> None:
        while (reply := await queue.get()) is not None:
            if transport.is_closing():
                return
            transport.write(reply[0])
            await asyncio.sleep(self._delay_s)
            if transport.is_closing():
                return
            transport.write(reply[1])
        transport.close()


async def serve(host: str, port: int, delay_s: float) -> None:
    loop = asyncio.get_running_loop()
    cache = ReplyCache()
    server = await loop.create_server(
        lambda: UpstreamProtocol(cache, delay_s), host, port, backlog=4096
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
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, args.first_token_delay_ms / 1000))


if __name__ == "__main__":
    main()
