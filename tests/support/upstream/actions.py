"""The actions of a plan (``rid=r17 plan=status:503:1,ok``): each word names a ``Behaviour``.

A new fault is a function of the action's arguments, registered with ``@action("name")``.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import replace

import orjson

from tests.support.upstream.behaviour import Behaviour
from tests.support.upstream.exchange import Exchange, stream_headers

Action = Callable[[list[str]], Behaviour]
ACTIONS: dict[str, Action] = {}


def action(name: str) -> Callable[[Action], Action]:
    """Register ``function(args) -> Behaviour`` as the plan action ``name[:ARG[:ARG]]``."""

    def register(function: Action) -> Action:
        ACTIONS[name] = function
        return function

    return register


@action("ok")
def _ok(args: list[str]) -> Behaviour:
    """``ok[:PIECES[:INTERVAL]]``: ``PIECES`` (5) pieces ``p0 p1 ...``, ``INTERVAL`` s apart."""
    pieces = int(args[0]) if args else 5
    interval = float(args[1]) if len(args) > 1 else 0.0
    return Behaviour(
        pieces=tuple(f"p{i} " for i in range(pieces)),
        interval_s=interval,
        prompt_tokens=7,
        completion_tokens=pieces,
    )


@action("choices")
def _choices(args: list[str]) -> Behaviour:
    """``choices``: honour the request's ``n`` (default 1) and ``max_tokens`` (default 16):
    a whole chat completion of ``n`` choices of ``max_tokens`` words each, its usage
    counting every choice."""

    async def respond(exchange: Exchange) -> bool:
        body = exchange.request.body if isinstance(exchange.request.body, dict) else {}
        count = body.get("n") or 1
        words = body.get("max_tokens") or body.get("max_completion_tokens") or 16
        shape = Behaviour(pieces=("w ",) * words, prompt_tokens=7, completion_tokens=count * words)
        answer = exchange.dialect.whole(exchange.request, shape)
        first = answer["choices"][0]
        answer["choices"] = [{**first, "index": index} for index in range(count)]
        return await exchange.send_json(200, answer)

    return Behaviour(respond=respond)


@action("delay")
def _delay(args: list[str]) -> Behaviour:
    """``delay:S``: wait ``S`` seconds before the headers, then answer ``ok``."""
    return replace(_ok([]), headers_delay_s=float(args[0]))


@action("reset")
def _reset_after(args: list[str]) -> Behaviour:
    """``reset:N``: a stream breaks with a TCP reset after ``N`` events; a whole answer mid-body."""
    return replace(_ok([]), fail_after=int(args[0]), drop="reset")


@action("fin")
def _fin_after(args: list[str]) -> Behaviour:
    """``fin:N``: a stream's body ends cleanly after ``N`` events, without its end marker."""
    return replace(_ok([]), fail_after=int(args[0]), drop="end")


@action("status")
def _status(args: list[str]) -> Behaviour:
    """``status:CODE[:RETRY_AFTER]``: an error; ``RETRY_AFTER`` is seconds, ``date+S`` or text."""
    retry_after = _retry_after(args[1]) if len(args) > 1 else None
    return Behaviour(status=int(args[0]), retry_after=retry_after, error_message="injected fault")


@action("drip")
def _drip_bytes(args: list[str]) -> Behaviour:
    """``drip``: the headers of a stream, then one byte every 0.8 s (never a whole event)."""

    async def respond(exchange: Exchange) -> bool:
        await exchange.write_head(200, stream_headers("chunked"))
        while await exchange.pause(0.8):
            await exchange.write(b"1\r\nd\r\n")
        return exchange.peer_left()

    return Behaviour(respond=respond)


@action("stall")
def _stall(args: list[str]) -> Behaviour:
    """``stall``: read the request, never answer (until the gateway gives up)."""

    async def respond(exchange: Exchange) -> bool:
        await exchange.pause(None)
        return exchange.peer_left()

    return Behaviour(respond=respond)


@action("html")
def _html(args: list[str]) -> Behaviour:
    """``html``: status 200 with an HTML error page."""
    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    return _fixed(200, "text/html", page)


@action("empty")
def _empty(args: list[str]) -> Behaviour:
    """``empty``: status 200 with ``{}``."""
    return _fixed(200, "application/json", b"{}")


@action("weird")
def _weird(args: list[str]) -> Behaviour:
    """``weird``: status 200 with an object whose fields have the wrong shapes."""
    payload = {"choices": [1, {"message": 5}, {"delta": []}], "usage": {"prompt_tokens": "x"}}
    return _fixed(200, "application/json", orjson.dumps(payload))


@action("redirect")
def _redirect(args: list[str]) -> Behaviour:
    """``redirect:HOST:PORT``: 302 to ``http://HOST:PORT/v1/chat/completions``."""
    location = f"http://{args[0]}:{args[1]}/v1/chat/completions"

    async def respond(exchange: Exchange) -> bool:
        return await exchange.send(302, {"location": location, "content-length": "0"})

    return Behaviour(respond=respond)


@action("echo")
def _echo_credentials(args: list[str]) -> Behaviour:
    """``echo:CODE``: an error whose message quotes every credential header received."""
    status = int(args[0])

    async def respond(exchange: Exchange) -> bool:
        names = {"authorization", "x-api-key", "api-key"}
        quoted = {k: v for k, v in exchange.request.headers.items() if k in names}
        message = f"Incorrect API key provided: {quoted}"
        return await exchange.send_json(status, exchange.dialect.error(status, message))

    return Behaviour(respond=respond)


@action("endless")
def _endless(args: list[str]) -> Behaviour:
    """``endless``: a 200 JSON answer whose chunked body never ends, as fast as it is read."""

    async def respond(exchange: Exchange) -> bool:
        await exchange.write_head(
            200, {"content-type": "application/json", "transfer-encoding": "chunked"}
        )
        piece = _chunk(b"a" * 65536)
        try:
            await exchange.write(_chunk(b'{"id": "x", "choices": [{"message": {"content": "'))
            while True:
                await exchange.write(piece)
        except ConnectionError:
            return exchange.peer_left()

    return Behaviour(respond=respond)


@action("huge")
def _huge(args: list[str]) -> Behaviour:
    """``huge:MIB``: a 200 JSON answer of ``MIB`` MiB, with its ``Content-Length``."""
    size = int(args[0]) << 20

    async def respond(exchange: Exchange) -> bool:
        head, tail = _split_completion(exchange)
        await exchange.write_head(
            200, {"content-type": "application/json", "content-length": str(size)}
        )
        left = size - len(head) - len(tail) - 2
        try:
            await exchange.write(head + b'"')
            while left > 0:
                await exchange.write(b"a" * min(left, 65536))
                left -= 65536
            await exchange.write(b'"' + tail)
        except ConnectionError:
            return exchange.peer_left()
        exchange.request.completed_at = time.monotonic()
        return True

    return Behaviour(respond=respond)


@action("gzip")
def _gzip(args: list[str]) -> Behaviour:
    """``gzip:MIB``: a 200 answer with an unasked ``Content-Encoding: gzip``: a JSON answer
    whose content is ``MIB`` MiB of zeros, compressed about 1000 to 1 (streams: five
    pieces, compressed)."""
    mib = int(args[0])

    async def respond(exchange: Exchange) -> bool:
        if exchange.request.stream:
            events = exchange.dialect.events(exchange.request, _ok([]))
            body = gzip_bomb(b"".join(events), b"", b"", 0)
            kind = "text/event-stream"
        else:
            head, tail = _split_completion(exchange)
            body = await asyncio.to_thread(gzip_bomb, head + b'"', b"0", b'"' + tail, mib)
            kind = "application/json"
        headers = {
            "content-type": kind,
            "content-encoding": "gzip",
            "content-length": str(len(body)),
        }
        try:
            return await exchange.send(200, headers, body)
        except ConnectionError:
            return exchange.peer_left()

    return Behaviour(respond=respond)


@action("nolines")
def _nolines(args: list[str]) -> Behaviour:
    """``nolines:MIB``: a stream of two pieces, then ``MIB`` MiB without a newline."""
    mib = int(args[0])

    async def respond(exchange: Exchange) -> bool:
        events = exchange.dialect.events(exchange.request, _ok(["2"]))
        await exchange.write_head(200, stream_headers("chunked"))
        piece = _chunk(b"x" * 65536)
        try:
            await exchange.write(
                b"".join(_chunk(event) for event in events[:3]) + _chunk(b"data: ")
            )
            exchange.request.events_sent = 3
            for _ in range(mib * 16):
                await exchange.write(piece)
            await exchange.write(b"0\r\n\r\n")
        except ConnectionError:
            return exchange.peer_left()
        return True

    return Behaviour(respond=respond)


@action("long")
def _long(args: list[str]) -> Behaviour:
    """``long:PIECES:SIZE[:HOLD]``: a stream of ``PIECES`` pieces of ``SIZE`` characters of
    words (``p<i> w w w ...``), then ``HOLD`` seconds of silence (unless the gateway
    leaves) before the end."""
    pieces, size = int(args[0]), int(args[1])
    hold = float(args[2]) if len(args) > 2 else 0.0
    filler = " w" * max(0, (size - 8) // 2)
    shape = Behaviour(
        pieces=tuple(f"p{i:<6}{filler}" for i in range(pieces)),
        prompt_tokens=7,
        completion_tokens=pieces,
    )

    async def respond(exchange: Exchange) -> bool:
        events = exchange.dialect.events(exchange.request, shape)
        await exchange.write_head(200, stream_headers("chunked"))
        try:
            for event in events[: pieces + 1]:
                await exchange.write(_chunk(event))
                exchange.request.events_sent += 1
                if exchange.request.first_event_at is None:
                    exchange.request.first_event_at = time.monotonic()
            if not await exchange.pause(hold):
                return exchange.peer_left()
            rest = b"".join(_chunk(event) for event in events[pieces + 1 :])
            await exchange.write(rest + b"0\r\n\r\n")
        except ConnectionError:
            return exchange.peer_left()
        exchange.request.completed_at = time.monotonic()
        return True

    return Behaviour(respond=respond)


@functools.cache
def gzip_bomb(head: bytes, filler: bytes, tail: bytes, mib: int) -> bytes:
    """gzip of ``head``, ``mib`` MiB of ``filler`` and ``tail``, built in a few milliseconds.

    After a full flush the compressor starts afresh, so one compressed MiB can be
    repeated; only the CRC needs the whole input.
    """
    block = filler * ((1 << 20) // max(1, len(filler))) if filler else b""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = deflate.compress(head) + deflate.flush(zlib.Z_FULL_FLUSH)
    repeated = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH) if mib else b""
    last = deflate.compress(tail) + deflate.flush()
    crc = zlib.crc32(head)
    for _ in range(mib):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(tail, crc)
    size = len(head) + len(block) * mib + len(tail)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
    return header + first + repeated * mib + last + trailer


def _split_completion(exchange: Exchange) -> tuple[bytes, bytes]:
    """The dialect's whole answer of one piece, split around that piece's quoted text."""
    whole = orjson.dumps(exchange.dialect.whole(exchange.request, _ok(["1"])))
    head, _, tail = whole.partition(b'"p0 "')
    return head, tail


def _chunk(data: bytes) -> bytes:
    """One piece of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def _fixed(status: int, content_type: str, body: bytes) -> Behaviour:
    async def respond(exchange: Exchange) -> bool:
        headers = {"content-type": content_type, "content-length": str(len(body))}
        return await exchange.send(status, headers, body)

    return Behaviour(respond=respond)


def _retry_after(value: str) -> str:
    if value.startswith("date+"):
        return email.utils.formatdate(time.time() + float(value[5:]), usegmt=True)
    return value
