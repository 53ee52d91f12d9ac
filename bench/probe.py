"""Sequential raw-socket HTTP/1.1 client for time-to-first-token.

wrk only sees whole responses, so the time until the first SSE ``data:``
byte is measured here: one request at a time on a keep-alive connection,
with no HTTP library between the socket and the clock.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

NONSTREAM_BODY = b'{"model":"default-chat","messages":[{"role":"user","content":"hi"}]}'
STREAM_BODY = (
    b'{"model":"default-chat","messages":[{"role":"user","content":"hi"}],'
    b'"stream":true,"stream_options":{"include_usage":true}}'
)


@dataclass(frozen=True)
class ProbeResult:
    status: int
    body: bytes
    first_data_s: float | None  # request sent -> first "data:" byte seen


class _Reader:
    """Buffers one response and notes when "data:" first shows in its body."""

    def __init__(self, sock: socket.socket, sent_at: float) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.body_start = -1
        self.first_data_s: float | None = None
        self._sent_at = sent_at
        self._last_recv = sent_at

    def more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection mid-response")
        self._last_recv = time.perf_counter()
        self.buf += chunk
        self._note_data()

    def start_body(self, at: int) -> None:
        self.body_start = at
        self._note_data()

    def _note_data(self) -> None:
        # Chunk-size lines are hex digits, so "data:" can only be SSE payload.
        if (
            self.first_data_s is None
            and self.body_start >= 0
            and self.buf.find(b"data:", self.body_start) >= 0
        ):
            self.first_data_s = self._last_recv - self._sent_at

    def until(self, size: int) -> None:
        while len(self.buf) < size:
            self.more()

    def line_end(self, pos: int) -> int:
        while (end := self.buf.find(b"\r\n", pos)) < 0:
            self.more()
        return end


def _read_chunked(reader: _Reader) -> bytes:
    body = bytearray()
    pos = reader.body_start
    while True:
        eol = reader.line_end(pos)
        size = int(bytes(reader.buf[pos:eol]).split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            reader.until(pos + 2)  # the servers measured here send no trailers
            return bytes(body)
        reader.until(pos + size + 2)
        body += reader.buf[pos : pos + size]
        pos += size + 2


class HttpProbe:
    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"need an http://host:port/path URL, got {url!r}")
        self._address = (parts.hostname, parts.port)
        self._timeout_s = timeout_s
        auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
        self._head = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
            f"Content-Type: application/json\r\nAccept: */*\r\n{auth}"
        ).encode()
        self._sock: socket.socket | None = None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def post(self, body: bytes) -> ProbeResult:
        if self._sock is None:
            self._sock = socket.create_connection(self._address, timeout=self._timeout_s)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = self._head + b"Content-Length: %d\r\n\r\n" % len(body) + body
        sent_at = time.perf_counter()
        try:
            self._sock.sendall(request)
            result, keep_alive = self._read(_Reader(self._sock, sent_at))
        except BaseException:
            self.close()
            raise
        if not keep_alive:
            self.close()
        return result

    @staticmethod
    def _read(reader: _Reader) -> tuple[ProbeResult, bool]:
        while (end := reader.buf.find(b"\r\n\r\n")) < 0:
            reader.more()
        lines = bytes(reader.buf[:end]).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        reader.start_body(end + 4)
        keep_alive = headers.get("connection", "").lower() != "close"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = _read_chunked(reader)
        elif "content-length" in headers:
            length = int(headers["content-length"])
            reader.until(reader.body_start + length)
            body = bytes(reader.buf[reader.body_start : reader.body_start + length])
        else:
            raise ConnectionError("response has neither chunked framing nor Content-Length")
        return ProbeResult(status, body, reader.first_data_s), keep_alive
