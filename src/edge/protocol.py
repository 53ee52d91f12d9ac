"""The HTTP server layer's guards: uvicorn's httptools protocol with a read deadline and limits.

Run the gateway with it: ``uvicorn src.app:app --http src.edge.protocol:GatewayProtocol``
(``llm-gateway serve`` always does).
What it adds to uvicorn's own protocol, before the app sees a request:

- **Read deadline**: a request's head and body must arrive within
  ``request_read_timeout_s`` of the connection opening (or of the request's
  first byte on a kept-alive connection). A client that sends its headers or
  its body too slowly, or connects and sends nothing, gets ``408`` and the
  connection is closed; the handler reading the body sees the client leave.
- **Head size**: a request head (request line and headers) over
  ``max_header_bytes`` gets ``431``; uvicorn's parser has no limit of its own.
- **Envelope**: a request uvicorn cannot parse (a bad ``Content-Length``, two of
  them, ``Content-Length`` with chunked encoding, garbage) gets ``400`` in the
  gateway's JSON error envelope instead of uvicorn's plain text.
- **Write timeout**: once the connection's send buffer is full (the transport
  paused writing, so the app's ``send`` waits), a client that takes no byte of
  it for ``response_write_timeout_s`` is cut (the connection aborted, since a
  plain close would wait for the unread buffer); a stream learns why from the
  scope (``CONNECTION_CUT``) and logs it as the client's fault.
- **Shutdown deadline**: when uvicorn starts shutting down, every connection
  whose answer has started and is still open ``shutdown_drain_s`` plus one
  second later (the drain's last error event had that second to get out) is
  aborted, so a client that reads nothing cannot keep the process alive.
- **Early answers**: an answer sent before its request's body arrived (a 413 on
  ``Content-Length``, a 401, a 429 before the body is read) is followed by at
  most ``_LINGER_BYTES`` and ``_LINGER_S`` of reading (and dropping) the rest:
  a body that arrives within that keeps the connection; otherwise reading
  stops and the connection closes. uvicorn alone reads and drops for as long as
  the client sends.
- **Pipelining**: answers never interleave. A request pipelined behind an
  answer still being sent is timed from when it becomes current, and a refusal
  of its head waits for the answers before it.

The limits are the gateway config's; the app's lifespan sets them (``configure``)
before the server accepts its first connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..errors import (
    ClientTooSlow,
    GatewayError,
    InvalidRequest,
    RequestHeadTooLarge,
    RequestTimeout,
)
from .routes import dialect_for
from .streams import CONNECTION_CUT

_LINGER_S = 2.0
_LINGER_BYTES = 8 * 1024 * 1024  # what a client may still send after an early answer
_LAST_EVENT_S = 1.0  # after the drain deadline, for the streams' last error event
_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class _HeadTooLarge(Exception):
    pass


class GatewayProtocol(HttpToolsProtocol):
    read_timeout_s = 30.0
    max_header_bytes = 64 * 1024
    write_timeout_s = 30.0
    drain_s = 10.0

    @classmethod
    def configure(
        cls,
        read_timeout_s: float,
        max_header_bytes: int,
        write_timeout_s: float = 30.0,
        drain_s: float = 10.0,
    ) -> None:
        cls.read_timeout_s = read_timeout_s
        cls.max_header_bytes = max_header_bytes
        cls.write_timeout_s = write_timeout_s
        cls.drain_s = drain_s

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._in_head = True
        self._refused = False
        self._dropped = 0  # bytes read and dropped since the refusal
        self._deferred: bytes | None = None  # a refusal waiting for the answer before it
        self._untimed = False  # a head began behind an answer still being sent
        # Answered before its body arrived: the rest of the body is read (and dropped) for
        # a moment, at most _LINGER_BYTES, so that a body about to arrive keeps the
        # connection; a body still coming after that is not read any further.
        self._draining: asyncio.TimerHandle | None = None
        self._drained = 0
        self._write_watch: asyncio.TimerHandle | None = None
        self._unsent = 0  # bytes waiting in the transport when last looked at
        self._taken_at = 0.0  # when the client last took some of them
        self._shutdown_cut: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._stop_write_watch()
        if self._shutdown_cut is not None:
            self._shutdown_cut.cancel()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_watch is None:
            self._unsent = self.transport.get_write_buffer_size()
            self._taken_at = self.loop.time()
            self._watch_writes()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._stop_write_watch()

    def shutdown(self) -> None:
        super().shutdown()
        if self._shutdown_cut is None:
            self._shutdown_cut = self.loop.call_later(
                self.drain_s + _LAST_EVENT_S, self._cut_at_shutdown
            )

    def data_received(self, data: bytes) -> None:
        if self._refused:  # after a refusal, what the client still sends is dropped, bounded
            self._dropped += len(data)
            if self._dropped > _LINGER_BYTES:
                self.transport.pause_reading()
            return
        if self._draining is not None:
            self._drained += len(data)
            if self._drained > _LINGER_BYTES:
                self._stop_draining()
                return
        if self._in_head:
            # Counted per read, not per header (cheap); an over-count (a body in the same
            # read) is settled exactly in on_headers_complete. A pipelined head that
            # arrives in the read ending the previous request is bounded by the read size.
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > self.max_header_bytes and not self._refused:
            self._refuse(RequestHeadTooLarge(_too_large_head(self.max_header_bytes)))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # A request pipelined behind an answer still being sent is not timed until it
        # becomes current (on_response_complete): its reading waits on that answer.
        if self._read_deadline is None:
            if self._answering():
                self._untimed = True
            else:
                self._arm()

    def on_headers_complete(self) -> None:
        if self._head_bytes > self.max_header_bytes and self._head_size() > self.max_header_bytes:
            # Raised inside the parser's callback: the parser stops, and uvicorn answers
            # through send_400_response, which knows why.
            self._head_bytes = -1
            raise _HeadTooLarge
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head, self._head_bytes = True, 0  # what comes next is the next head
        super().on_message_complete()
        if self._draining is not None:  # the body of an early answer did arrive: carry on
            self._draining.cancel()
            self._draining = None
            super().on_response_complete()

    def on_response_complete(self) -> None:
        """An answer is sent: start the next request, or close.

        Closed after the answer (bounded linger) when a refusal of a later request
        waited for it. An answer that went out before its request's body arrived
        waits a moment for the rest of that body (``_LINGER_BYTES``, ``_LINGER_S``):
        past that, the connection closes, rather than read and drop whatever the
        client goes on sending.
        """
        cycle = self.cycle
        if self.transport.is_closing():
            super().on_response_complete()
            return
        if self._deferred is not None and not self.pipeline:
            self.server_state.total_requests += 1
            self.transport.write(self._deferred)
            self._linger()
            return
        if cycle.response_complete and cycle.more_body:
            self._drained = 0
            self._draining = self.loop.call_later(_LINGER_S, self._stop_draining)
            self.flow.resume_reading()
            return
        upcoming = self.pipeline[-1][0] if self.pipeline else None
        super().on_response_complete()
        untimed, self._untimed = self._untimed, False
        if self._read_deadline is not None or self.transport.is_closing():
            return
        if upcoming.more_body if upcoming is not None else untimed and self._in_head:
            self._arm()  # the next request is current now: its time starts

    def send_400_response(self, msg: str) -> None:
        if self._head_bytes == -1:
            self._refuse(RequestHeadTooLarge(_too_large_head(self.max_header_bytes)))
        else:
            self._refuse(InvalidRequest(f"Invalid HTTP request: {msg}"))

    def _answering(self) -> bool:
        """Whether an answer to an earlier request on this connection is still being sent."""
        cycle = self.cycle
        return cycle is not None and not cycle.response_complete

    def _head_size(self) -> int:
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _arm(self) -> None:
        self._read_deadline = self.loop.call_later(self.read_timeout_s, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        self._refuse(
            RequestTimeout(
                f"The request did not arrive within {self.read_timeout_s:g} s; send it faster."
            )
        )

    def _watch_writes(self) -> None:
        # Looked at four times per timeout: a client is cut within 1.25 timeouts of its last byte.
        self._write_watch = self.loop.call_later(self.write_timeout_s / 4, self._check_writes)

    def _check_writes(self) -> None:
        """Cut the client once it has taken nothing of a full send buffer for the write timeout."""
        self._write_watch = None
        unsent, now = self.transport.get_write_buffer_size(), self.loop.time()
        if unsent < self._unsent:
            self._unsent, self._taken_at = unsent, now
        elif now - self._taken_at >= self.write_timeout_s:
            self._cut(
                ClientTooSlow(
                    f"The client took none of the answer for {self.write_timeout_s:g} s"
                    " (response_write_timeout_s)."
                )
            )
            return
        self._watch_writes()

    def _stop_write_watch(self) -> None:
        if self._write_watch is not None:
            self._write_watch.cancel()
            self._write_watch = None

    def _cut_at_shutdown(self) -> None:
        """The drain deadline has passed: an answer still being written is given up."""
        self._shutdown_cut = None
        cycle = self.cycle
        if self.transport.is_closing() or (cycle is not None and cycle.response_started):
            self._cut(None)

    def _cut(self, error: GatewayError | None) -> None:
        """Reset the connection; say why in the scope, when there is a why to say.

        A close would wait for the client to read the buffer; a reset (linger 0)
        also lets the kernel drop what it still holds for the client.
        """
        cycle = self.cycle
        if error is not None and cycle is not None and not cycle.response_complete:
            cycle.scope[CONNECTION_CUT] = error  # type: ignore[literal-required]
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def _refuse(self, error: GatewayError) -> None:
        """Answer ``error`` in its path's dialect, unless an answer already started; close.

        The refusal of a request whose head is being read waits, when an answer to
        an earlier request is still being sent, for that answer to end: bytes of two
        answers never mix.
        """
        self._disarm()
        if self._refused or self.transport.is_closing():
            return
        answer = _answer(error, getattr(self, "url", None))
        cycle = self.cycle
        if self._in_head:  # of a request that has no cycle yet
            if self._answering():
                self._deferred = answer
                self._refused = True
                self.transport.pause_reading()
                return
            self.transport.write(answer)
        else:  # of the current request, whose body is being read
            if cycle is None or not cycle.response_started:
                self.transport.write(answer)
            if cycle is not None and not cycle.response_complete:
                # What connection_lost will say, said now: the app's reads see the client
                # gone, and whatever it still sends is dropped, not written after this answer.
                cycle.disconnected = True
                cycle.message_event.set()
        self._linger()

    def _stop_draining(self) -> None:
        """The body of an early answer did not arrive in time (or was too large): close."""
        self.server_state.total_requests += 1
        self._dropped = self._drained  # one budget for the drain and the linger
        self._disarm()
        self._linger()

    def _linger(self) -> None:
        """A lingering close: stop sending, read (and drop) what the client is still sending
        for a moment, at most ``_LINGER_BYTES``; closing with unread data would reset the
        connection, and the client could lose the answer."""
        if self._draining is not None:
            self._draining.cancel()
            self._draining = None
        self._refused = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(_LINGER_S, self.transport.close)


def _too_large_head(limit: int) -> str:
    return f"The request head is larger than {limit} bytes."


def _answer(error: GatewayError, url: bytes | None) -> bytes:
    dialect = dialect_for(url.decode("latin-1") if url else "/")
    body = dialect.error_bytes(error)
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (error.status, _REASONS[error.status]),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )
