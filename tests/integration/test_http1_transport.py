"""The gateway's own HTTP/1.1 transport, against raw loopback servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from src.providers.http1 import Http1Transport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.closed_by_client = asyncio.Event()

    async def __aenter__(self) -> str:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            finally:
                writer.close()

        self._server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return await reader.readexactly(length) if length else b""


def respond(body: bytes, *extra: bytes) -> bytes:
    headers = b"".join(h + b"\r\n" for h in extra)
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), headers, body)


async def post(
    transport: Http1Transport, base: str, body: bytes = b"{}", read: float = 5.0
) -> tuple[int, bytes]:
    request = httpx.Request(
        "POST", base + "/v1/chat/completions", content=body,
        extensions={"timeout": {"connect": 2.0, "read": read, "write": 2.0, "pool": 2.0}},
    )  # fmt: skip
    response = await transport.handle_async_request(request)
    try:
        data = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
    finally:
        await response.aclose()
    return response.status_code, data


async def test_sequential_requests_reuse_one_connection():
    async def echo(reader, writer):
        while True:
            try:
                body = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(respond(b"echo:" + body))

    server = Server(echo)
    async with server as base:
        transport = Http1Transport()
        for i in range(20):
            assert await post(transport, base, b"%d" % i) == (200, b"echo:%d" % i)
        await transport.aclose()
    assert server.connections == 1


async def test_chunked_and_close_delimited_bodies_are_read_whole():
    async def chunked(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for piece in (b"hel", b"lo ", b"world"):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")

    async def until_close(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nto the end")
        await writer.drain()

    for handler, expected in ((chunked, b"hello world"), (until_close, b"to the end")):
        async with Server(handler) as base:
            transport = Http1Transport()
            assert await post(transport, base) == (200, expected)
            await transport.aclose()


async def test_a_pooled_connection_the_server_closed_is_replaced():
    async def one_answer_then_close(reader, writer):
        await read_request(reader)
        writer.write(respond(b"ok"))  # keep-alive by default, but the server closes anyway
        await writer.drain()

    server = Server(one_answer_then_close)
    async with server as base:
        transport = Http1Transport()
        assert await post(transport, base) == (200, b"ok")
        await asyncio.sleep(0.05)  # the close reaches the pooled connection
        assert await post(transport, base) == (200, b"ok")
        await transport.aclose()
    assert server.connections == 2


async def test_a_silent_upstream_is_a_read_timeout():
    async def stall(reader, writer):
        await read_request(reader)
        await asyncio.sleep(5)

    async with Server(stall) as base:
        transport = Http1Transport()
        started = asyncio.get_running_loop().time()
        with pytest.raises(httpx.ReadTimeout):
            await post(transport, base, read=0.3)
        assert asyncio.get_running_loop().time() - started < 2
        await transport.aclose()


async def test_no_server_is_a_connect_error():
    async def listen(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with Server(listen) as base:
        pass  # closed: nothing listens there any more
    transport = Http1Transport()
    with pytest.raises(httpx.ConnectError):
        await post(transport, base)


async def test_garbage_is_a_protocol_error_and_a_cut_body_a_read_error():
    async def garbage(reader, writer):
        await read_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")

    async def cut(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly a part")
        await writer.drain()

    for handler, error in ((garbage, httpx.RemoteProtocolError), (cut, httpx.ReadError)):
        async with Server(handler) as base:
            transport = Http1Transport()
            with pytest.raises(error):
                await post(transport, base)
            await transport.aclose()


async def test_closing_a_streamed_body_early_closes_the_connection():
    seen_eof = asyncio.Event()

    async def endless(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(b"5\r\nfirst\r\n")
        await writer.drain()
        if await reader.read(1) == b"":
            seen_eof.set()

    async with Server(endless) as base:
        transport = Http1Transport()
        request = httpx.Request("POST", base + "/x", content=b"{}")
        response = await transport.handle_async_request(request)
        async for chunk in response.stream:  # type: ignore[union-attr]
            assert chunk == b"first"
            break
        await response.aclose()
        await asyncio.wait_for(seen_eof.wait(), 2)
        await transport.aclose()


async def test_the_request_goes_out_as_http11_with_host_and_length():
    seen: list[bytes] = []

    async def record(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head)
        await reader.readexactly(2)
        writer.write(respond(b"ok"))

    async with Server(record) as base:
        transport = Http1Transport()
        request = httpx.Request("POST", base + "/v1/chat/completions?x=1", content=b"{}")
        response = await transport.handle_async_request(request)
        await response.aread()
        await response.aclose()
        await transport.aclose()
    request_line, *headers = seen[0].decode().split("\r\n")
    assert request_line == "POST /v1/chat/completions?x=1 HTTP/1.1"
    lowered = [h.lower() for h in headers]
    assert any(h.startswith("host: 127.0.0.1:") for h in lowered)
    assert "content-length: 2" in lowered


async def test_the_provider_setting_picks_the_transport_and_aiohttp_still_works(tmp_path):
    from src.providers import configured_transport
    from src.providers.transport import AiohttpTransport
    from tests.support.configs import make_config

    config = make_config(tmp_path)
    default = configured_transport(config.providers["primary"])
    assert isinstance(default, Http1Transport)
    chosen = configured_transport(
        config.providers["primary"].model_copy(update={"transport": "aiohttp"})
    )
    assert isinstance(chosen, AiohttpTransport)

    async def echo(reader, writer):
        body = await read_request(reader)
        writer.write(respond(b"echo:" + body))

    async with Server(echo) as base:
        request = httpx.Request("POST", base + "/v1/chat/completions", content=b"hi")
        response = await chosen.handle_async_request(request)
        assert response.status_code == 200
        assert await response.aread() == b"echo:hi"
        await response.aclose()
    await chosen.aclose()
    await default.aclose()
