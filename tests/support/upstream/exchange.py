"""One request being answered: the bytes, the waits that end when the gateway leaves, the record."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
from typing import Any, Literal

import orjson

from tests.support.upstream.behaviour import Behaviour, Canned, Received
from tests.support.upstream.dialects import Dialect

_REASONS = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}


class Exchange:
    """One request being answered: writes bytes, waits unless the gateway leaves, records."""

    def __init__(
        self,
        request: Received,
        behaviour: Behaviour,
        dialect: Dialect,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.request = request
        self.behaviour = behaviour
        self.dialect = dialect
        self.reader = reader
        self.writer = writer
        self.gone = False

    async def pause(self, seconds: float | None) -> bool:
        """Wait ``seconds`` (``None``: forever); False as soon as the gateway closes the connection.

        Only ever called while an answer is incomplete, when an HTTP/1.1 client
        sends nothing, so the read below returns only when the peer has left.
        """
        if self.gone:
            return False
        if seconds is not None and seconds <= 0:
            await asyncio.sleep(0)
            return True
        watcher = asyncio.ensure_future(self.reader.read(1))
        finished, _ = await asyncio.wait({watcher}, timeout=seconds)
        if watcher in finished:
            self.gone = True
            with contextlib.suppress(Exception):
                watcher.result()
            return False
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        return True

    def peer_left(self) -> bool:
        """Record that the gateway closed the connection first; the connection is done."""
        self.request.closed_by_peer_at = time.monotonic()
        return False

    async def write_head(self, status: int, headers: dict[str, str]) -> None:
        reason = _REASONS.get(status, "Status")
        lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers.items())]
        self.request.status = status
        await self.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, status: int, headers: dict[str, str], body: bytes = b"") -> bool:
        """A whole response; the connection stays open for the next request."""
        await self.write_head(status, headers)
        await self.write(body)
        self.request.completed_at = time.monotonic()
        return True

    async def send_json(
        self, status: int, payload: Any, extra: dict[str, str] | None = None
    ) -> bool:
        body = orjson.dumps(payload)
        headers = {"content-type": "application/json", "content-length": str(len(body))}
        return await self.send(status, {**headers, **(extra or {})}, body)

    async def send_canned(self, canned: Canned) -> bool:
        """A queued answer: its JSON whole, or its events as a chunked stream, one per chunk."""
        if canned.events is None:
            body = json.dumps(canned.json).encode()
            headers = {"content-type": "application/json", "content-length": str(len(body))}
            return await self.send(canned.status, headers, body)
        events = [_sse(event, canned.named) for event in canned.events]
        if not canned.named:
            events.append(b"data: [DONE]\n\n")
        await self.write_head(canned.status, stream_headers("chunked"))
        for event in events:
            await self.write(b"%x\r\n%s\r\n" % (len(event), event))
            if self.request.first_event_at is None:
                self.request.first_event_at = time.monotonic()
            self.request.events_sent += 1
        await self.write(b"0\r\n\r\n")
        self.request.completed_at = time.monotonic()
        return True

    def drop(self, how: Literal["close", "reset"]) -> bool:
        """Break the answer: a FIN (``close``) or a TCP reset (``reset``)."""
        self.request.dropped_at = time.monotonic()
        if how == "reset":
            sock = self.writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.writer.transport.abort()
        else:
            self.writer.transport.close()
        return False

    async def answer(self) -> bool:
        """Answer as the behaviour says; False when the connection must not serve another."""
        behaviour, request = self.behaviour, self.request
        if behaviour.respond is not None:
            return await behaviour.respond(self)
        if not await self.pause(behaviour.headers_delay_s):
            return self.peer_left()
        if behaviour.status != 200:
            if not await self.pause(behaviour.first_delay_s):
                return self.peer_left()
            extra = {"retry-after": behaviour.retry_after} if behaviour.retry_after else {}
            request.retry_after = behaviour.retry_after
            error = self.dialect.error(behaviour.status, behaviour.error_message)
            return await self.send_json(behaviour.status, error, extra)
        if request.stream:
            return await self._stream()
        return await self._whole()

    async def _whole(self) -> bool:
        behaviour = self.behaviour
        wait = behaviour.first_delay_s + behaviour.interval_s * len(behaviour.pieces)
        if not await self.pause(wait):
            return self.peer_left()
        if behaviour.fail_after is not None:
            headers = {"content-type": "application/json", "content-length": "400"}
            await self.write_head(200, headers)
            await self.write(b'{"id": "x", ')
            return self.drop("close" if behaviour.drop == "close" else "reset")
        return await self.send_json(200, self.dialect.whole(self.request, behaviour))

    async def _stream(self) -> bool:
        behaviour, request = self.behaviour, self.request
        chunked = behaviour.framing == "chunked"
        events = self.dialect.events(request, behaviour)
        await self.write_head(200, stream_headers(behaviour.framing))
        if not await self.pause(behaviour.first_delay_s):
            return self.peer_left()
        for index, event in enumerate(events):
            if behaviour.fail_after is not None and index >= behaviour.fail_after:
                if behaviour.drop != "end":
                    return self.drop(behaviour.drop)
                request.dropped_at = time.monotonic()
                break
            if index > 0 and not await self.pause(behaviour.interval_s):
                return self.peer_left()
            await self.write(b"%x\r\n%s\r\n" % (len(event), event) if chunked else event)
            if request.first_event_at is None:
                request.first_event_at = time.monotonic()
            request.events_sent += 1
        if chunked:
            await self.write(b"0\r\n\r\n")
        if request.dropped_at is None:
            request.completed_at = time.monotonic()
        return chunked


def _sse(event: dict[str, Any], named: bool) -> bytes:
    data = b"data: " + json.dumps(event).encode() + b"\n\n"
    return b"event: " + str(event["type"]).encode() + b"\n" + data if named else data


def stream_headers(framing: str) -> dict[str, str]:
    headers = {"content-type": "text/event-stream", "cache-control": "no-cache"}
    if framing == "chunked":
        headers["transfer-encoding"] = "chunked"
    else:
        headers["connection"] = "close"
    return headers
