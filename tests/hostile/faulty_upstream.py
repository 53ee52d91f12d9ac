"""A fault-injecting OpenAI-shaped upstream on a real loopback socket, and a connection sentinel.

``FaultyUpstream`` is raw asyncio in its own thread, so it controls every byte
and every close. What it does with a request is written in the request itself,
in the text of the last message, so it survives every translation the gateway
makes (``/v1/messages`` becomes a chat body) and needs no shared state:

    "rid=r17 plan=status:503:1,ok"

``rid`` names the client request (all its attempts share it); ``plan`` is a
comma-separated list of actions, one per attempt (the last one repeats):

- ``ok[:PIECES[:INTERVAL]]``: a normal answer (streamed when the body asks),
  ``PIECES`` content chunks ``p0 p1 ...``, ``INTERVAL`` seconds apart.
- ``delay:S``: wait ``S`` seconds before the headers, then answer ``ok``.
- ``reset:N``: streams: ``N`` events, then a TCP reset; otherwise: headers and
  half a body, then a reset.
- ``fin:N``: ``N`` events, then a clean end of the HTTP body without ``[DONE]``.
- ``drip``: headers, then one byte every 0.8 s (never a whole event).
- ``stall``: read the request, never answer.
- ``html`` / ``empty`` / ``weird``: status 200 with an HTML page, ``{}``, or an
  object of the wrong shapes.
- ``redirect:HOST:PORT``: 302 to ``http://HOST:PORT/v1/chat/completions``.
- ``status:CODE[:RETRY_AFTER]``: an error status; ``RETRY_AFTER`` is seconds,
  ``date+S`` (an HTTP date S seconds ahead) or any other text (sent as it is).
- ``echo:CODE``: an error status whose body quotes every credential header it got.

Every attempt is recorded (``Attempt``): rid, action, headers, body, when it
arrived, when its first event went out, and when the gateway closed the
connection before the answer ended. ``Sentinel`` is a listener that only
counts connections: hosts no request may ever make the gateway call.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import re
import socket
import struct
import threading
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.upstream_server import wait_unless_peer_leaves

_DIRECTIVE = re.compile(r"rid=([^\s\"\\]+)\s+plan=([^\s\"\\]+)")
CREATED = 1_700_000_000


@dataclass
class Attempt:
    rid: str
    number: int  # 1 for the first attempt of this rid
    action: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float  # time.monotonic() when the request was read
    wall: float  # time.time() then
    retry_after: str | None = None  # the Retry-After header sent, if any
    first_event_at: float | None = None
    events_sent: int = 0
    closed_by_peer_at: float | None = None
    ended_at: float | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)


def directive(rid: str, plan: str) -> str:
    return f"rid={rid} plan={plan}"


class _Loopback:
    """A server on 127.0.0.1:0 running its own event loop in a thread."""

    def __init__(self) -> None:
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def __enter__(self) -> Any:
        self._thread = threading.Thread(target=self._run, daemon=True, name=type(self).__name__)
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError(f"{type(self).__name__} did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(5)
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        server = loop.run_until_complete(
            asyncio.start_server(self._track, "127.0.0.1", 0, backlog=1024)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._server = server
        self._ready.set()
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(server.serve_forever())
        loop.close()

    async def _stop(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    async def _track(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.connection(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        except Exception:  # a bug in the fake itself: make it visible
            traceback.print_exc()
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class Sentinel(_Loopback):
    """Counts every connection made to it; answers nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.connections = 0

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()


class FaultyUpstream(_Loopback):
    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[Attempt] = []
        self.by_rid: dict[str, list[Attempt]] = defaultdict(list)
        self.connections = 0
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def of(self, rid: str) -> list[Attempt]:
        with self._lock:
            return list(self.by_rid.get(rid, ()))

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while True:
            attempt = await self._read(reader)
            if attempt is None:
                return
            try:
                keep = await self._answer(attempt, reader, writer)
            finally:
                attempt.ended_at = time.monotonic()
                attempt.done.set()
            if not keep:
                return

    async def _read(self, reader: asyncio.StreamReader) -> Attempt | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        lines = head.decode("latin-1").split("\r\n")
        _, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        raw = await reader.readexactly(int(headers.get("content-length") or 0))
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        found = _DIRECTIVE.search(raw.decode("utf-8", "replace"))
        rid, plan = found.groups() if found else ("-", "ok")
        with self._lock:
            number = len(self.by_rid[rid]) + 1
            actions = plan.split(",")
            action = actions[min(number, len(actions)) - 1]
            attempt = Attempt(
                rid, number, action, path, headers, body, time.monotonic(), time.time()
            )
            self.by_rid[rid].append(attempt)
            self.attempts.append(attempt)
        return attempt

    async def _answer(
        self, attempt: Attempt, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        name, *args = attempt.action.split(":")
        stream = isinstance(attempt.body, dict) and attempt.body.get("stream") is True
        if name == "delay":
            if not await wait_unless_peer_leaves(reader, float(args[0])):
                attempt.closed_by_peer_at = time.monotonic()
                return False
            name, args = "ok", []
        if name == "ok":
            pieces = int(args[0]) if args else 5
            interval = float(args[1]) if len(args) > 1 else 0.0
            if stream:
                return await self._stream(attempt, reader, writer, pieces, interval, None)
            if not await wait_unless_peer_leaves(reader, interval * pieces):
                attempt.closed_by_peer_at = time.monotonic()
                return False
            if attempt.path.endswith("/embeddings"):
                return await _json(writer, 200, _embeddings(attempt))
            if attempt.path.endswith("/responses"):
                return await _json(writer, 200, _response(attempt, pieces))
            return await _json(writer, 200, _completion(attempt, pieces))
        if name in {"reset", "fin"}:
            if not stream:
                writer.write(
                    _head(200, {"content-type": "application/json", "content-length": "400"})
                    + b'{"id": "x", '
                )
                await writer.drain()
                _reset(writer)
                return False
            return await self._stream(attempt, reader, writer, 5, 0.0, (name, int(args[0])))
        if name == "drip":
            return await self._drip(attempt, reader, writer)
        if name == "stall":
            await reader.read(1)  # until the gateway gives up and closes
            attempt.closed_by_peer_at = time.monotonic()
            return False
        if name == "html":
            page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            writer.write(
                _head(200, {"content-type": "text/html", "content-length": str(len(page))}) + page
            )
            await writer.drain()
            return True
        if name == "empty":
            return await _json(writer, 200, {})
        if name == "weird":
            return await _json(
                writer,
                200,
                {"choices": [1, {"message": 5}, {"delta": []}], "usage": {"prompt_tokens": "x"}},
            )
        if name == "redirect":
            location = f"http://{args[0]}:{args[1]}/v1/chat/completions"
            writer.write(_head(302, {"location": location, "content-length": "0"}))
            await writer.drain()
            return True
        if name == "status":
            extra = {"retry-after": _retry_after(args[1])} if len(args) > 1 else {}
            attempt.retry_after = extra.get("retry-after")
            error = {"error": {"message": "injected fault", "type": "server_error"}}
            return await _json(writer, int(args[0]), error, extra)
        if name == "echo":
            quoted = {
                k: v
                for k, v in attempt.headers.items()
                if k in {"authorization", "x-api-key", "api-key"}
            }
            message = f"Incorrect API key provided: {quoted}"
            return await _json(writer, int(args[0]), {"error": {"message": message}})
        raise ValueError(f"unknown action {attempt.action!r}")

    async def _stream(
        self,
        attempt: Attempt,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pieces: int,
        interval: float,
        fault: tuple[str, int] | None,
    ) -> bool:
        events = _events(attempt, pieces)
        writer.write(
            _head(200, {"content-type": "text/event-stream", "transfer-encoding": "chunked"})
        )
        await writer.drain()
        peer = asyncio.ensure_future(reader.read(1))
        try:
            for index, event in enumerate(events):
                if fault is not None and index >= fault[1]:
                    if fault[0] == "reset":
                        _reset(writer)
                        return False
                    writer.write(b"0\r\n\r\n")  # a clean end, without [DONE]
                    await writer.drain()
                    return True
                if index and interval:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(peer), interval)
                if peer.done():
                    attempt.closed_by_peer_at = time.monotonic()
                    return False
                writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                await writer.drain()
                attempt.events_sent += 1
                if attempt.first_event_at is None:
                    attempt.first_event_at = time.monotonic()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        except ConnectionError:
            attempt.closed_by_peer_at = time.monotonic()
            return False
        finally:
            peer.cancel()

    async def _drip(
        self, attempt: Attempt, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        writer.write(
            _head(200, {"content-type": "text/event-stream", "transfer-encoding": "chunked"})
        )
        await writer.drain()
        try:
            while await wait_unless_peer_leaves(reader, 0.8):
                writer.write(b"1\r\nd\r\n")
                await writer.drain()
        except ConnectionError:
            pass
        attempt.closed_by_peer_at = time.monotonic()
        return False


async def _json(
    writer: asyncio.StreamWriter, status: int, payload: Any, extra: dict[str, str] | None = None
) -> bool:
    body = orjson.dumps(payload)
    headers = {
        "content-type": "application/json",
        "content-length": str(len(body)),
        **(extra or {}),
    }
    writer.write(_head(status, headers) + body)
    await writer.drain()
    return True


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} Status", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _retry_after(value: str) -> str:
    if value.startswith("date+"):
        return email.utils.formatdate(time.time() + float(value[5:]), usegmt=True)
    return value


def _completion(attempt: Attempt, pieces: int) -> dict[str, Any]:
    text = " ".join(f"p{i}" for i in range(pieces))
    return {
        "id": "chatcmpl-faulty",
        "object": "chat.completion",
        "created": CREATED,
        "model": attempt.body.get("model") if isinstance(attempt.body, dict) else None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": pieces, "total_tokens": 7 + pieces},
    }


def _response(attempt: Attempt, pieces: int) -> dict[str, Any]:
    """A Responses API answer with the same text as ``_completion``."""
    text = " ".join(f"p{i}" for i in range(pieces))
    content = [{"type": "output_text", "text": text, "annotations": []}]
    return {
        "id": "resp_faulty",
        "object": "response",
        "created_at": CREATED,
        "status": "completed",
        "model": attempt.body.get("model") if isinstance(attempt.body, dict) else None,
        "output": [
            {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
             "content": content}
        ],
        "usage": {"input_tokens": 7, "output_tokens": pieces, "total_tokens": 7 + pieces},
    }  # fmt: skip


def _embeddings(attempt: Attempt) -> dict[str, Any]:
    inputs = attempt.body.get("input") if isinstance(attempt.body, dict) else None
    count = len(inputs) if isinstance(inputs, list) else 1
    data = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2]} for i in range(count)]
    return {
        "object": "list",
        "data": data,
        "usage": {"prompt_tokens": count, "total_tokens": count},
    }


def _events(attempt: Attempt, pieces: int) -> list[bytes]:
    model = attempt.body.get("model") if isinstance(attempt.body, dict) else None

    def chunk(choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        data = {
            "id": "chatcmpl-faulty",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "choices": choices,
            "usage": usage,
        }
        return b"data: " + orjson.dumps(data) + b"\n\n"

    def delta(content: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": content, "finish_reason": finish}]

    events = [chunk(delta({"role": "assistant", "content": ""}))]
    events += [chunk(delta({"content": f"p{i} "})) for i in range(pieces)]
    events.append(chunk(delta({}, "stop")))
    events.append(
        chunk([], {"prompt_tokens": 7, "completion_tokens": pieces, "total_tokens": 7 + pieces})
    )
    events.append(b"data: [DONE]\n\n")
    return events
