"""An httpx transport over aiohttp's connection pool.

httpx stays the adapters' interface (``httpx.Request`` in, ``httpx.Response``
out), so tests can put ``httpx.MockTransport`` or a respx router in its place.
Behind it, aiohttp's pool holds up under concurrency where httpx's default
pool does not, and this transport does only what the gateway needs: no
redirects, no cookies, no proxies from the environment, no decompression
(the body is passed on as it came, with its ``Content-Encoding``, for the
adapter to refuse), and at most ``max_connections`` requests at once (a
``ConnectionCap`` in front of aiohttp's pool: the rest wait up to the
request's pool timeout, then ``httpx.PoolTimeout``).

Errors are mapped here, at the seam, to httpx's tree:
``httpx.ConnectError`` (could not connect), ``httpx.ReadTimeout`` (a timeout),
``httpx.ReadError`` (the connection broke while reading),
``httpx.RemoteProtocolError`` (the upstream broke HTTP).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx

from .pool import ConnectionCap, PoolObserver

# aiohttp has undone the chunked framing: httpx sees the body without it.
_FRAMING = frozenset({b"transfer-encoding"})


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (one connection pool) per transport, opened on first use."""

    def __init__(
        self,
        max_connections: int = 4096,
        keepalive_s: float = 30.0,
        observer: PoolObserver | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None
        self.cap = ConnectionCap(max_connections, observer)

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, keepalive_timeout=self._keepalive_s
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        timeout = request.extensions.get("timeout") or {}
        await self.cap.acquire(timeout.get("pool"))
        try:
            upstream = await session.request(
                request.method,
                str(request.url),
                headers=request.headers,
                data=request.content,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    sock_connect=timeout.get("connect"), sock_read=timeout.get("read")
                ),
            )
        except BaseException as exc:
            self.cap.release()
            raise _mapped(exc) from None
        headers = [(k, v) for k, v in upstream.raw_headers if k.lower() not in _FRAMING]
        return httpx.Response(
            upstream.status, headers=headers, stream=_Body(upstream, self.cap), request=request
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _Body(httpx.AsyncByteStream):
    """The upstream body as it arrives; closing it before the end drops the connection."""

    def __init__(self, upstream: aiohttp.ClientResponse, cap: ConnectionCap) -> None:
        self._upstream = upstream
        self._cap: ConnectionCap | None = cap
        self._complete = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._upstream.content.iter_any():
                yield chunk
        except BaseException as exc:
            raise _mapped(exc) from None
        self._complete = True

    async def aclose(self) -> None:
        if self._complete:
            self._upstream.release()  # back to the pool
        else:
            self._upstream.close()  # an unfinished body: the upstream sees the connection close
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


def _mapped(exc: BaseException) -> BaseException:
    """aiohttp's and asyncio's errors as httpx's; anything else (cancellation) as it is."""
    if isinstance(exc, TimeoutError):
        return httpx.ReadTimeout(f"upstream timed out ({type(exc).__name__})")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(f"could not connect ({type(exc).__name__})")
    broken = aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError | aiohttp.ClientOSError
    if isinstance(exc, broken):
        return httpx.ReadError(f"connection broken ({type(exc).__name__})")
    if isinstance(exc, aiohttp.ClientError):
        return httpx.RemoteProtocolError(f"upstream broke HTTP ({type(exc).__name__})")
    return exc
