"""A fake OpenAI upstream on a real loopback socket, and a runner for the gateway in a thread.

``FakeUpstream`` is raw asyncio (no framework) running its own event loop in a
background thread, so it controls every byte and every close: normal JSON
completions; SSE streams (role chunk, content chunks, finish chunk, the
usage-only chunk only when the request's ``stream_options.include_usage`` is
true, then ``data: [DONE]``); a delay before the first chunk; a slow drip;
dropping the connection after N events without ``[DONE]``; an HTTP error
status before any chunk. Behaviour is chosen per upstream model name (falling
back to ``default``), so one server can play several fallback targets.

Everything received is recorded in ``requests`` (``Received``: body, headers,
and the timeline of the response, including when the peer, i.e. the gateway,
closed a streaming connection before the response ended).

    with FakeUpstream() as up:
        up.behave("model-b", first_delay_s=0.3)
        ... base_url=up.base_url ...

``serve_app`` runs any ASGI app (the gateway) under uvicorn on a free loopback
port in a thread, for tests that need real sockets in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import pytest

CREATED = 1_700_000_000
DEFAULT_PIECES = ("Hello", " from", " the", " fake", " upstream.")


@dataclass(frozen=True)
class Behaviour:
    """What the upstream does with one request.

    ``fail_after``: number of SSE events written (the role chunk is the first)
    before the connection is dropped without ``[DONE]``; 0 drops it right
    after the response headers. ``framing`` is ``"chunked"`` (HTTP/1.1 chunked
    transfer encoding, a drop leaves the body incomplete) or ``"eof"`` (body
    delimited by the connection close, a drop looks like a clean end).
    """

    pieces: tuple[str, ...] = DEFAULT_PIECES
    status: int = 200
    error_message: str = "the fake upstream failed on purpose"
    retry_after: str | None = None
    first_delay_s: float = 0.0
    interval_s: float = 0.0
    fail_after: int | None = None
    usage: bool = True
    usage_null_on_chunks: bool = (
        True  # OpenAI: "usage": null on every chunk once usage is asked for
    )
    prompt_tokens: int = 9
    completion_tokens: int = 42
    framing: str = "chunked"

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def usage_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


def drip(count: int, interval_s: float, **overrides: Any) -> Behaviour:
    """``count`` one-word content chunks, one every ``interval_s`` seconds."""
    pieces = tuple(f"w{i} " for i in range(count))
    return Behaviour(pieces=pieces, interval_s=interval_s, **overrides)


@dataclass
class Received:
    """One request the upstream received, and what became of its response."""

    method: str
    path: str
    headers: dict[str, str]
    raw_body: bytes
    at: float  # time.monotonic() when the request was read
    body: Any = None
    status: int | None = None
    first_chunk_at: float | None = None
    events_sent: int = 0
    completed_at: float | None = None  # the whole response was written
    dropped_at: float | None = None  # the upstream dropped the connection on purpose
    closed_by_peer_at: float | None = None  # the gateway closed it before the response ended
    closed: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def stream(self) -> bool:
        return isinstance(self.body, dict) and self.body.get("stream") is True

    @property
    def include_usage(self) -> bool:
        options = self.body.get("stream_options") if isinstance(self.body, dict) else None
        return isinstance(options, dict) and options.get("include_usage") is True

    def wait_closed(self, timeout: float) -> bool:
        """Wait until the response ended however it ended (completed, dropped, or peer closed)."""
        return self.closed.wait(timeout)


class FakeUpstream:
    """The fake OpenAI upstream; a context manager, started on a free loopback port."""

    def __init__(self, default: Behaviour | None = None) -> None:
        self.default = default or Behaviour()
        self.behaviours: dict[str, Behaviour] = {}
        self.requests: list[Received] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._writers: set[asyncio.StreamWriter] = set()

    # -- configuration -------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def behave(
        self, model: str | None = None, behaviour: Behaviour | None = None, **kw: Any
    ) -> Behaviour:
        """Set the behaviour for requests naming upstream ``model`` (all models when ``None``)."""
        chosen = replace(behaviour or Behaviour(), **kw)
        if model is None:
            self.default = chosen
        else:
            self.behaviours[model] = chosen
        return chosen

    def behaviour_for(self, model: str | None) -> Behaviour:
        return self.behaviours.get(model or "", self.default)

    def received(self, model: str | None = None) -> list[Received]:
        return [r for r in self.requests if model is None or r.model == model]

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.requests)

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> FakeUpstream:
        self._thread = threading.Thread(target=self._run, name="fake-upstream", daemon=True)
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("the fake upstream did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(5)
        if self._thread is not None:
            self._thread.join(5)
        self._loop = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._server = loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_until_complete(self._server.serve_forever())
        except asyncio.CancelledError:
            pass
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    # -- HTTP --------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                keep_alive = await self._respond(request, reader, writer)
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return  # the peer left, or the server is stopping
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(self, reader: asyncio.StreamReader) -> Received | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raw = await _read_chunked(reader)
        else:
            raw = await reader.readexactly(int(headers.get("content-length") or 0))
        received = Received(method, path, headers, raw, time.monotonic())
        with contextlib.suppress(orjson.JSONDecodeError):
            received.body = orjson.loads(raw) if raw else None
        return received

    async def _respond(
        self, request: Received, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        if request.method == "GET" and request.path.endswith("/models"):
            return await self._send_json(request, writer, 200, {"object": "list", "data": []})
        if request.method != "POST" or not request.path.endswith("/chat/completions"):
            return await self._send_json(request, writer, 404, {"error": {"message": "no route"}})
        behaviour = self.behaviour_for(request.model)
        if behaviour.status != 200:
            await asyncio.sleep(behaviour.first_delay_s)
            extra = {"retry-after": behaviour.retry_after} if behaviour.retry_after else {}
            error = {"error": {"message": behaviour.error_message, "type": "server_error"}}
            return await self._send_json(request, writer, behaviour.status, error, extra)
        if not request.stream:
            if not await wait_unless_peer_leaves(reader, behaviour.first_delay_s):
                request.closed_by_peer_at = time.monotonic()
                request.closed.set()
                return False
            return await self._send_json(request, writer, 200, _completion(request, behaviour))
        return await self._stream(request, behaviour, reader, writer)

    async def _send_json(
        self,
        request: Received,
        writer: asyncio.StreamWriter,
        status: int,
        payload: Any,
        extra: dict[str, str] | None = None,
    ) -> bool:
        body = orjson.dumps(payload)
        headers = {
            "content-type": "application/json",
            "content-length": str(len(body)),
            **(extra or {}),
        }
        writer.write(_head(status, headers) + body)
        await writer.drain()
        request.status = status
        request.completed_at = time.monotonic()
        request.closed.set()
        return True

    async def _stream(
        self,
        request: Received,
        behaviour: Behaviour,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Write the SSE events while watching for the gateway closing the connection."""
        chunked = behaviour.framing == "chunked"
        events = _stream_events(request, behaviour)
        peer_gone = asyncio.Event()

        async def watch() -> None:
            # The gateway sends nothing more on this connection while the response
            # runs, so the read only returns when it closes the connection.
            with contextlib.suppress(ConnectionError):
                await reader.read(1)
            peer_gone.set()

        watcher = asyncio.create_task(watch())

        async def pause(seconds: float) -> bool:
            """Sleep; False if the peer left meanwhile."""
            if seconds <= 0:
                await asyncio.sleep(0)
                return not peer_gone.is_set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(peer_gone.wait(), seconds)
            return not peer_gone.is_set()

        def frame(data: bytes) -> bytes:
            return b"%x\r\n%s\r\n" % (len(data), data) if chunked else data

        def peer_closed() -> bool:
            request.closed_by_peer_at = time.monotonic()
            request.closed.set()
            return False

        try:
            headers = {"content-type": "text/event-stream", "cache-control": "no-cache"}
            if chunked:
                headers["transfer-encoding"] = "chunked"
            else:
                headers["connection"] = "close"
            writer.write(_head(200, headers))
            await writer.drain()
            request.status = 200
            if not await pause(behaviour.first_delay_s):
                return peer_closed()
            for index, event in enumerate(events):
                if behaviour.fail_after is not None and index >= behaviour.fail_after:
                    request.dropped_at = time.monotonic()
                    request.closed.set()
                    _abort(writer)
                    return False
                if index > 0 and not await pause(behaviour.interval_s):
                    return peer_closed()
                if peer_gone.is_set():
                    return peer_closed()
                writer.write(frame(event))
                await writer.drain()
                if request.first_chunk_at is None:
                    request.first_chunk_at = time.monotonic()
                request.events_sent += 1
            if chunked:
                writer.write(b"0\r\n\r\n")
            await writer.drain()
            request.completed_at = time.monotonic()
            request.closed.set()
            return chunked
        except ConnectionError:
            return peer_closed()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


async def wait_unless_peer_leaves(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Sleep ``seconds``; False as soon as the gateway closes the connection instead."""
    if seconds <= 0:
        return True
    try:
        await asyncio.wait_for(reader.read(1), seconds)
    except TimeoutError:
        return True
    except ConnectionError:
        return False
    return False  # the read returned: EOF, the gateway closed the connection


def _head(status: int, headers: dict[str, str]) -> bytes:
    reasons = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}
    lines = [f"HTTP/1.1 {status} {reasons.get(status, 'Status')}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _abort(writer: asyncio.StreamWriter) -> None:
    """Drop the connection at once, mid-body."""
    writer.transport.close()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _completion(request: Received, behaviour: Behaviour) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": CREATED,
        "model": request.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": behaviour.text, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
    }
    if behaviour.usage:
        answer["usage"] = behaviour.usage_dict
    return answer


def _stream_events(request: Received, behaviour: Behaviour) -> list[bytes]:
    """Role chunk, content chunks, finish chunk, usage-only chunk when asked, ``[DONE]``."""
    include_usage = request.include_usage

    def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        payload: dict[str, Any] = {
            "id": "chatcmpl-fake-stream",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": request.model,
            "choices": choices,
        }
        if usage is not None or (include_usage and behaviour.usage_null_on_chunks):
            payload["usage"] = usage
        return b"data: " + orjson.dumps(payload) + b"\n\n"

    def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]

    events = [chunk(choice({"role": "assistant", "content": ""}))]
    events += [chunk(choice({"content": piece})) for piece in behaviour.pieces]
    events.append(chunk(choice({}, "stop")))
    if include_usage and behaviour.usage:
        events.append(chunk([], behaviour.usage_dict))
    events.append(b"data: [DONE]\n\n")
    return events


@pytest.fixture
def fake_upstream() -> Iterator[FakeUpstream]:
    """A started ``FakeUpstream``; import this fixture into a test module to use it."""
    with FakeUpstream() as server:
        yield server


# -- the gateway (any ASGI app) on a real socket, in a thread ---------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_app(app: Any, *, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` with uvicorn on loopback in a thread; yields its base URL.

    The app's lifespan runs (startup before the URL is yielded, shutdown at exit).
    """
    import uvicorn

    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)  # in a thread, uvicorn leaves the signal handlers alone
    thread = threading.Thread(target=server.run, name="gateway-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def wait_until(predicate: Callable[[], Any], timeout: float = 3.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; return it (or the last falsy value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
