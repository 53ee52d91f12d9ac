"""Many concurrent SSE streams from one core: the client side of the streams benchmark.

N clients, each on its own keep-alive HTTP/1.1 connection, post a streamed
chat completion, read it to its end and post the next one, in a loop. Raw
asyncio protocols on uvloop, no HTTP library: per received read one callback,
chunked-transfer decoding, a split on blank lines and one ``orjson.loads``
per event, so that one core holds thousands of streams.

Clients are started spread over the ramp; once every client has received a
first content chunk (or a bound has passed) the measured window opens. What
is measured at the client, with ``time.perf_counter``:

- TTFT: request written -> first event whose ``delta.content`` is not empty;
- gap: between consecutive content events of one stream;
- duration: request written -> end of the response.

A stream fails on a status other than 200, an error event, a response that
ends without ``data: [DONE]`` or with fewer content events than expected, a
connection that cannot be opened or breaks, or no byte for ``STALL_S``. A
failed client closes its connection, pauses ``RETRY_PAUSE_S`` (so that a
gateway answering errors at once is not flooded) and starts again.
Everything is counted only inside the window; when it closes, every
connection is aborted.
"""

from __future__ import annotations

import asyncio
import gc
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol, cast
from urllib.parse import urlsplit

import orjson
import uvloop

STALL_S = 60.0  # no byte for this long: the stream counts as failed
CONNECT_TIMEOUT_S = 10.0
RETRY_PAUSE_S = 0.1
RAMP_WAIT_S = 20.0  # after the ramp, at most this long for every client to stream
SAMPLE_S = 0.1
MAX_HEAD = 64 * 1024
SAMPLE_BYTES = 300  # of the first answer per failure reason, for the report

# Where a response is in its parse.
HEAD, SIZE, DATA, TRAILER, LENGTH, TO_CLOSE = range(6)


class Meter(Protocol):
    """What the runner reads from /proc: ``sample`` every ``SAMPLE_S`` from
    the ramp to the end of the window, ``start`` and ``stop`` at the window's edges."""

    def sample(self) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...


@dataclass(frozen=True)
class Load:
    url: str  # the chat-completions URL
    body: bytes
    api_key: str | None
    expected_chunks: int  # content events in a complete stream
    ramp_s: float
    window_s: float


@dataclass
class Tally:
    """What the clients saw inside the window. Times in seconds."""

    ttft: array[float] = field(default_factory=lambda: array("d"))
    gaps: array[float] = field(default_factory=lambda: array("d"))
    durations: array[float] = field(default_factory=lambda: array("d"))
    completed: int = 0  # streams that ended well inside the window
    chunks: int = 0  # content events received inside the window
    failures: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class StepResult:
    streams: int
    tally: Tally
    window_s: float  # as measured, not as asked
    ramp_s: float  # first client started -> window opened
    streaming_at_start: int  # clients that had streamed when the window opened
    ramp_failures: Counter[str]
    in_flight_at_end: int
    waiting_at_end: int  # in flight without a first content event when the window closed
    failure_samples: dict[str, bytes]


class Step:
    """State the clients of one step share."""

    def __init__(self, load: Load, streams: int) -> None:
        parts = urlsplit(load.url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"need an http://host:port/path URL, got {load.url!r}")
        self.host, self.port = parts.hostname, parts.port
        auth = f"Authorization: Bearer {load.api_key}\r\n" if load.api_key else ""
        self.request = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
            f"Content-Type: application/json\r\nAccept: text/event-stream\r\n{auth}"
            f"Content-Length: {len(load.body)}\r\n\r\n"
        ).encode() + load.body
        self.expected_chunks = load.expected_chunks
        self.window = Tally()
        self.recording: Tally | None = None  # the window's tally while it is open
        self.stopping = False
        self.ramp_failures: Counter[str] = Counter()
        self.failure_samples: dict[str, bytes] = {}
        self.streamed = bytearray(streams)  # 1 once client i has had a content event
        self.streaming = 0
        self.connections: set[StreamConnection] = set()

    def failed(self, reason: str, sample: bytes = b"") -> None:
        if self.stopping:
            return  # aborted by the end of the window, not by the target
        counter = self.recording.failures if self.recording else self.ramp_failures
        counter[reason] += 1
        self.failure_samples.setdefault(reason, sample[:SAMPLE_BYTES])


class StreamConnection(asyncio.Protocol):
    """One client's connection: sends a request, parses its streamed answer."""

    def __init__(self, step: Step, client: int) -> None:
        self.step = step
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.keep_alive = True
        self.buf = bytearray()
        self.sse = bytearray()  # decoded body not yet split into events
        self.state = HEAD
        self.left = 0  # DATA: chunk bytes + CRLF still to come; LENGTH: body bytes
        self.future: asyncio.Future[str | None] | None = None
        self.sent_at = self.first_at = self.last_chunk_at = self.last_byte_at = 0.0
        self.content = 0
        self.done = False

    def stream(self) -> asyncio.Future[str | None]:
        """Send one request; the future gets None when the stream ended well,
        else the failure reason (and the connection is then closed)."""
        assert self.transport is not None and self.future is None
        self.future = asyncio.get_running_loop().create_future()
        self.state, self.content, self.done, self.first_at = HEAD, 0, False, 0.0
        self.sse.clear()
        self.sent_at = self.last_byte_at = time.perf_counter()
        self.transport.write(self.step.request)
        return self.future

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport implements asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.step.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.step.connections.discard(self)
        if self.future is None:
            return
        if self.state == TO_CLOSE:
            self._events(time.perf_counter())
            if self.future is not None:
                self._end(time.perf_counter())
        else:
            self.fail("closed mid-stream" if self.state != HEAD else "closed before the answer")

    def fail(self, reason: str, sample: bytes = b"") -> None:
        self.step.failed(reason, sample)
        future, self.future = self.future, None
        if future is not None and not future.done():
            future.set_result(reason)
        if not self.closed and self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        now = self.last_byte_at = time.perf_counter()
        if self.future is None:
            self.fail("bytes with no request in flight", data)
            return
        if self.state == SIZE and not self.buf and not self.sse and self._one_chunk(data, now):
            return
        buf = self.buf
        buf += data
        if self.state == HEAD and not self._head():
            return
        if self.state in (SIZE, DATA, TRAILER):
            ended = self._chunked()
        elif self.state == LENGTH:
            take = min(self.left, len(buf))
            self.sse += buf[:take]
            del buf[:take]
            self.left -= take
            ended = self.left == 0
        else:  # TO_CLOSE: the body ends with the connection
            self.sse += buf
            buf.clear()
            ended = False
        self._events(now)
        if ended and self.future is not None:
            self._end(now)

    def _one_chunk(self, data: bytes, now: float) -> bool:
        """The common read, one whole chunk of whole events (a token), without
        copying it into the buffers; False (nothing done) for any other read."""
        eol = data.find(b"\r\n", 0, 10)
        if eol <= 0:
            return False
        try:
            end = eol + 2 + int(data[:eol], 16)
        except ValueError:
            return False
        if end == eol + 2 or len(data) != end + 2 or not data.endswith(b"\n\n\r\n"):
            return False
        start = eol + 2
        if data.startswith(b"data: ", start) and data.find(b"\n", start, end - 2) < 0:
            self._data(data[start + 6 : end - 2], now)  # one event of one line
            return True
        while start < end and self.future is not None:
            stop = data.find(b"\n\n", start, end)
            self._event(data[start:stop], now)
            start = stop + 2
        return True

    def _head(self) -> bool:
        """Parse the response head once it is all in; False when not yet or failed."""
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD:
                self.fail("response head too large")
            return False
        lines = bytes(buf[:end]).split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        status = rest[:3]
        if not version.startswith(b"HTTP/1.") or not status.isdigit():
            self.fail("not an HTTP/1.1 response", bytes(buf))
            return False
        if status != b"200":
            self.fail(f"status {status.decode()}", bytes(buf))
            return False
        keep_alive = version == b"HTTP/1.1"
        chunked, length = False, -1
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"transfer-encoding":
                chunked = value.endswith(b"chunked")
            elif name == b"content-length" and value.isdigit():
                length = int(value)
            elif name == b"connection":
                keep_alive = value != b"close"
        del buf[: end + 4]
        if chunked:
            self.state = SIZE
        elif length >= 0:
            self.state, self.left = LENGTH, length
        else:
            self.state, keep_alive = TO_CLOSE, False
        self.keep_alive = keep_alive
        return True

    def _chunked(self) -> bool:
        """Decode chunked framing from ``buf`` into ``sse``; True at the end of the body."""
        buf, pos = self.buf, 0
        while True:
            if self.state == DATA:
                available = len(buf) - pos
                data = max(0, min(available, self.left - 2))  # the CRLF after is not data
                self.sse += buf[pos : pos + data]
                taken = min(available, self.left)
                pos += taken
                self.left -= taken
                if self.left:
                    break
                self.state = SIZE
                continue
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                if len(buf) - pos > MAX_HEAD:
                    self.fail("bad chunked framing")
                    return False
                break
            line = bytes(buf[pos:eol])
            pos = eol + 2
            if self.state == TRAILER:
                if not line:  # the blank line that ends the body
                    del buf[:pos]
                    return True
                continue
            try:
                size = int(line.split(b";", 1)[0], 16)
            except ValueError:
                self.fail("bad chunked framing", line)
                return False
            if size:
                self.state, self.left = DATA, size + 2
            else:
                self.state = TRAILER
        del buf[:pos]
        return False

    def _events(self, now: float) -> None:
        sse = self.sse
        if b"\r" in sse:  # SSE allows CRLF line ends; a lone CR waits for its LF
            sse[:] = sse.replace(b"\r\n", b"\n")
        start = 0
        while (end := sse.find(b"\n\n", start)) >= 0:
            self._event(sse[start:end], now)
            start = end + 2
            if self.future is None:
                return  # the event failed the stream
        if start:
            del sse[:start]

    def _event(self, event: bytes | bytearray, now: float) -> None:
        if event.startswith(b"data: {") and b"\n" not in event:  # the usual one-line event
            self._data(event[6:], now)
            return
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                self._data(line[5:].strip(), now)
            elif line.startswith(b"event:") and line[6:].strip() == b"error":
                self.fail("error event", bytes(event))
            if self.future is None:
                return

    def _data(self, payload: bytes | bytearray, now: float) -> None:
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.fail("event is not JSON", bytes(payload))
            return
        if type(message) is not dict:
            return
        if message.get("error"):
            self.fail("error event", bytes(payload))
            return
        choices = message.get("choices")
        if choices and type(choices) is list and type(choices[0]) is dict:
            delta = choices[0].get("delta")
            if type(delta) is dict and delta.get("content"):
                self._content(now)

    def _content(self, now: float) -> None:
        step, tally = self.step, self.step.recording
        if not self.content:
            self.first_at = now
            if not step.streamed[self.client]:
                step.streamed[self.client] = 1
                step.streaming += 1
            if tally is not None:
                tally.ttft.append(now - self.sent_at)
        elif tally is not None:
            tally.gaps.append(now - self.last_chunk_at)
        if tally is not None:
            tally.chunks += 1
        self.last_chunk_at = now
        self.content += 1

    def _end(self, now: float) -> None:
        if not self.done:
            self.fail("no data: [DONE]")
            return
        if self.content < self.step.expected_chunks:
            self.fail(f"short (fewer than {self.step.expected_chunks} content events)")
            return
        tally = self.step.recording
        if tally is not None:
            tally.completed += 1
            tally.durations.append(now - self.sent_at)
        future, self.future = self.future, None
        if future is not None and not future.done():
            future.set_result(None)


async def _connect(step: Step, index: int) -> StreamConnection | None:
    loop = asyncio.get_running_loop()
    try:
        _, connection = await asyncio.wait_for(
            loop.create_connection(lambda: StreamConnection(step, index), step.host, step.port),
            CONNECT_TIMEOUT_S,
        )
    except (OSError, TimeoutError) as exc:
        step.failed("connect failed", str(exc).encode())
        return None
    return connection


async def _client(step: Step, index: int, delay_s: float) -> None:
    await asyncio.sleep(delay_s)
    connection: StreamConnection | None = None
    while not step.stopping:
        if connection is None or connection.closed:
            connection = await _connect(step, index)
        if connection is None or await connection.stream() is not None:
            connection = None
            await asyncio.sleep(RETRY_PAUSE_S)
        elif not connection.keep_alive and connection.transport is not None:
            connection.transport.close()
            connection = None


async def _watch(step: Step, meter: Meter) -> None:
    """Sample the meter; fail streams that have stalled."""
    ticks = 0
    while True:
        await asyncio.sleep(SAMPLE_S)
        meter.sample()
        ticks += 1
        if ticks % 10 == 0:
            limit = time.perf_counter() - STALL_S
            for connection in list(step.connections):
                if connection.future is not None and connection.last_byte_at < limit:
                    connection.fail("stalled")


async def _drive(load: Load, streams: int, meter: Meter) -> StepResult:
    step = Step(load, streams)
    loop = asyncio.get_running_loop()
    watcher = loop.create_task(_watch(step, meter))
    started = time.perf_counter()
    clients = [
        loop.create_task(_client(step, i, i * load.ramp_s / streams)) for i in range(streams)
    ]
    deadline = started + load.ramp_s + RAMP_WAIT_S
    while step.streaming < streams and time.perf_counter() < deadline:
        await asyncio.sleep(0.02)
    streaming_at_start = step.streaming
    meter.start()
    opened = time.perf_counter()
    step.recording = step.window
    await asyncio.sleep(load.window_s)
    step.recording = None
    closed = time.perf_counter()
    meter.stop()
    step.stopping = True
    in_flight = [c for c in step.connections if c.future is not None]
    waiting = sum(1 for c in in_flight if not c.content)
    for connection in list(step.connections):
        if connection.transport is not None:
            connection.transport.abort()
    for task in (*clients, watcher):
        task.cancel()
    await asyncio.gather(*clients, watcher, return_exceptions=True)
    return StepResult(
        streams=streams,
        tally=step.window,
        window_s=closed - opened,
        ramp_s=opened - started,
        streaming_at_start=streaming_at_start,
        ramp_failures=step.ramp_failures,
        in_flight_at_end=len(in_flight),
        waiting_at_end=waiting,
        failure_samples=step.failure_samples,
    )


def run_step(load: Load, streams: int, meter: Meter) -> StepResult:
    """``streams`` clients against ``load.url`` for one ramp and window, on a fresh event loop."""
    gc.collect()
    gc.freeze()  # what exists now is never garbage: keep collections short during the window
    try:
        return uvloop.run(_drive(load, streams, meter))
    finally:
        gc.unfreeze()
