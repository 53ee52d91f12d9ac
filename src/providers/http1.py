"""An httpx transport that speaks HTTP/1.1 over a pool of asyncio connections.

The gateway's upstream calls are all alike (a POST with a JSON body, an answer
that is JSON or server-sent events), so a client that does only that can be
much cheaper than a general one: this transport spends about a fifth of the
CPU per call of aiohttp behind ``httpx``. It keeps httpx's interface
(``httpx.Request`` in, ``httpx.Response`` with a streamed body out), so the
adapters and their tests do not know which transport they use.

What it does: keep-alive connections per origin (reused newest first, closed
after ``keepalive_s`` idle), at most ``max_connections`` in use at once (a
``ConnectionCap``: the rest wait up to the request's pool timeout), TLS with
SNI, ``Content-Length``, chunked and close-delimited bodies (parsed by
``httptools``, uvicorn's parser), back pressure on streamed bodies, no
redirects, no cookies, no proxies, no compression asked for. A request on a
reused connection that the server had already closed is sent once more on a
new one.

Bounds: a response head of at most 64 KiB; at most 256 KiB of body buffered
before reading pauses. The read timeout measures the upstream: it runs while
the transport waits for bytes, not while reading is paused because the
consumer has not taken what arrived (the gateway's own back pressure).

Errors are httpx's: ``PoolTimeout`` (no free connection in time),
``ConnectError`` and ``ConnectTimeout`` (no connection), ``ReadTimeout`` (no
byte from the upstream for the request's read timeout), ``ReadError`` (the
connection broke), ``RemoteProtocolError`` (not HTTP/1.1, or a head too
large). Cancelling a request closes its connection.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import cast

import certifi
import httptools
import httpx

from .pool import ConnectionCap, PoolObserver

_PAUSE_AT = 256 * 1024  # bytes buffered from a streamed body before reading pauses
_MAX_HEAD = 64 * 1024  # bytes of response headers


class Http1Transport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        max_connections: int = 4096,
        keepalive_s: float = 30.0,
        observer: PoolObserver | None = None,
    ) -> None:
        self.cap = ConnectionCap(max_connections, observer)
        self._keepalive_s = keepalive_s
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._ssl: ssl.SSLContext | None = None
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout") or {}
        url = request.url
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        head = _head(request)
        streamed = not isinstance(request.stream, httpx.ByteStream)
        body = await request.aread() if streamed else request.content
        await self.cap.acquire(timeout.get("pool"))
        try:
            connection, reused = await self._connection(origin, timeout.get("connect"))
            try:
                status, headers = await connection.send(head, body, timeout.get("read"))
            except _StaleConnection:
                if not reused:
                    raise httpx.ReadError("the upstream closed the connection") from None
                connection, _ = await self._connection(origin, timeout.get("connect"), fresh=True)
                status, headers = await connection.send(head, body, timeout.get("read"))
        except BaseException:
            self.cap.release()
            raise
        return httpx.Response(
            status, headers=headers, stream=_Body(self, origin, connection), request=request
        )

    async def _connection(
        self, origin: tuple[str, str, int], connect_timeout: float | None, *, fresh: bool = False
    ) -> tuple[_Connection, bool]:
        idle = self._idle.get(origin)
        loop = asyncio.get_running_loop()
        while idle and not fresh:
            connection = idle.pop()
            if connection.usable(loop.time() - self._keepalive_s):
                return connection, True
            connection.close()
        scheme, host, port = origin
        tls = self._tls() if scheme == "https" else None
        try:
            async with asyncio.timeout(connect_timeout):
                _, connection = await loop.create_connection(
                    _Connection, host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {host}:{port} in time") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"could not connect ({type(exc).__name__})") from None
        return connection, False

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=certifi.where())
            self._ssl.set_alpn_protocols(["http/1.1"])
        return self._ssl

    def _release(
        self, origin: tuple[str, str, int], connection: _Connection, reusable: bool
    ) -> None:
        self.cap.release()
        if reusable and not self._closed:
            self._idle.setdefault(origin, deque()).append(connection)
        else:
            connection.close()

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()


class _Closed:
    """The parser of a closed connection: it parses nothing more."""

    def feed_data(self, data: bytes) -> None:
        return None

    def get_status_code(self) -> int:
        return 0

    def should_keep_alive(self) -> bool:
        return False


_CLOSED = _Closed()


class _StaleConnection(Exception):
    """A reused connection that the server closed before answering anything."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: sends a request, parses its response as it arrives."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._lost = False
        self.idle_since = self._loop.time()
        self._reset()

    def _reset(self) -> None:
        self._parser: httptools.HttpResponseParser | _Closed = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._head_waiter: asyncio.Future[tuple[int, list[tuple[bytes, bytes]]]] | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._body_waiter: asyncio.Future[None] | None = None
        self._complete = False
        self._keep_alive = False
        self._error: BaseException | None = None
        self._received = False
        self._read_timeout: float | None = None
        self._last_read = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False

    # -- the request ---------------------------------------------------------------

    def usable(self, idle_after: float) -> bool:
        return not self._lost and self.idle_since > idle_after

    async def send(
        self, head: bytes, body: bytes, read_timeout: float | None
    ) -> tuple[int, list[tuple[bytes, bytes]]]:
        assert self._transport is not None
        self._reset()
        self._head_waiter = self._loop.create_future()
        self._read_timeout = read_timeout
        self._last_read = self._loop.time()
        if read_timeout is not None:
            self._timer = self._loop.call_later(read_timeout, self._check_read_timeout)
        self._transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self._transport.write(body)
        try:
            return await self._head_waiter
        except BaseException:
            self.close()
            raise

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives: what arrived since the last step, as one piece."""
        pending = self._chunks
        while True:
            if pending:
                chunk = pending.popleft() if len(pending) == 1 else b"".join(pending)
                pending.clear()
                self._buffered = 0
                if self._paused:
                    self._resume()
                yield chunk
                continue
            if self._error is not None:
                raise self._error
            if self._complete:
                return
            self._body_waiter = self._loop.create_future()
            await self._body_waiter

    @property
    def reusable(self) -> bool:
        return self._complete and self._keep_alive and not self._lost

    def close(self) -> None:
        self._lost = True
        self._stop_timer()
        if self._transport is not None:
            self._transport.close()

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._received = True
        self._last_read = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"the upstream broke HTTP/1.1 ({exc})"))
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close the connection; connection_lost says what that means

    def connection_lost(self, exc: Exception | None) -> None:
        was_lost, self._lost = self._lost, True
        self._stop_timer()
        if not self._complete and not was_lost:
            if self._head_waiter is not None and not self._head_waiter.done():
                if not self._received:
                    self._fail(_StaleConnection())
                else:
                    self._fail(httpx.RemoteProtocolError("the upstream closed before its headers"))
            elif self._close_delimited():
                self.on_message_complete()
            else:
                self._fail(httpx.ReadError("the upstream closed the connection mid-body"))
        # The parser holds this protocol's callbacks: a reference cycle that only a full
        # collection would free. Cut, the closed connection is freed at once.
        self._parser = _CLOSED

    # -- httptools callbacks ----------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._error is not None:
            return
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > _MAX_HEAD:
            self._fail(
                httpx.RemoteProtocolError(f"the upstream sent over {_MAX_HEAD} bytes of head")
            )
            self.close()
            return
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue): the real one follows
            self._headers = []
            return
        if self._head_waiter is not None and not self._head_waiter.done():
            self._head_waiter.set_result((status, self._headers))

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _PAUSE_AT and not self._paused:
            self._pause()
        self._wake()

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:
            return
        self._complete = True
        # Only known inside this callback: the parser forgets it once the message is done.
        self._keep_alive = self._parser.should_keep_alive()
        self._stop_timer()
        self.idle_since = self._loop.time()
        self._wake()

    # -- helpers --------------------------------------------------------------------

    def _close_delimited(self) -> bool:
        names = {name.lower() for name, _ in self._headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def _fail(self, error: BaseException) -> None:
        self._error = error
        if self._head_waiter is not None and not self._head_waiter.done():
            self._head_waiter.set_exception(error)
        self._wake()

    def _wake(self) -> None:
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _pause(self) -> None:
        """Stop reading until the consumer catches up; the upstream is not waited for meanwhile."""
        if self._transport is None or self._lost:
            return
        self._paused = True
        self._stop_timer()
        self._transport.pause_reading()

    def _resume(self) -> None:
        self._paused = False
        if self._transport is None or self._lost:
            return
        self._transport.resume_reading()
        if self._read_timeout is not None and not self._complete:
            # The upstream's silence is counted from now, not from before the pause.
            self._last_read = self._loop.time()
            self._stop_timer()
            self._timer = self._loop.call_later(self._read_timeout, self._check_read_timeout)

    def _check_read_timeout(self) -> None:
        """Fail the request once the upstream has sent nothing for the read timeout."""
        self._timer = None
        if self._complete or self._lost or self._paused or self._read_timeout is None:
            return
        quiet = self._loop.time() - self._last_read
        if quiet >= self._read_timeout:
            self._fail(httpx.ReadTimeout(f"no answer from the upstream for {quiet:.1f} s"))
            self.close()
        else:
            remaining = self._read_timeout - quiet
            self._timer = self._loop.call_later(remaining, self._check_read_timeout)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _Body(httpx.AsyncByteStream):
    """The response body; the connection goes back to the pool once it was read to the end."""

    def __init__(
        self, owner: Http1Transport, origin: tuple[str, str, int], connection: _Connection
    ) -> None:
        self._owner = owner
        self._origin = origin
        self._connection = connection
        self._released = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._connection.chunks()

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            self._owner._release(self._origin, self._connection, self._connection.reusable)


def _head(request: httpx.Request) -> bytes:
    """The request line and headers (httpx has set ``Host`` and ``Content-Length``)."""
    target = request.url.raw_path
    lines = [request.method.encode() + b" " + target + b" HTTP/1.1"]
    lines.extend(name + b": " + value for name, value in request.headers.raw)
    return b"\r\n".join(lines) + b"\r\n\r\n"
