"""The one fake provider: a real HTTP/1.1 server on a free loopback port, steered per request.

It speaks what the gateway calls: OpenAI chat completions (whole and SSE),
OpenAI embeddings, Anthropic Messages (whole and SSE) and ``GET .../models``.
It is raw asyncio in a thread of its own (``LoopbackServer``), so it controls
every byte and every close; respx stays the fake for the app in-process.

What it does with one request is a ``Behaviour``, chosen in this order:

1. A directive in the request body, ``"rid=r17 plan=status:503:1,ok"``,
   anywhere in its text (``directive()`` writes one). It survives every
   translation the gateway makes and needs no shared state, so concurrent
   tests and gateway processes can use one upstream. ``rid`` names the client
   request (all its attempts share it); ``plan`` is a comma-separated list of
   actions, one per attempt, the last one repeating. The actions are
   ``ACTIONS`` (their docstrings say what each does).
2. The behaviour programmed for the upstream model the body names:
   ``upstream.behave("model-b", first_delay_s=0.3)``.
3. The default: ``upstream.behave(status=500)`` (no model) sets it.

Every request is recorded as a ``Received`` (``requests``, ``of(rid)``,
``received(model)``): headers, body, the action it got, and the timeline of its
answer, including when the gateway closed the connection before the answer ended.

A new fault is a function returning a ``Behaviour``, registered with
``@action("name")``. When no ``Behaviour`` field describes the bytes it needs
(an endless body, a gzip bomb, a stream without newlines), the behaviour's
``respond`` coroutine writes the whole response itself through the
``Exchange`` it is given.

    with FakeUpstream() as up:
        up.behave("model-b", first_delay_s=0.3)
        ... base_url=up.base_url ...
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
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import orjson

from tests.support.loopback import LoopbackServer

CREATED = 1_700_000_000
DEFAULT_PIECES = ("Hello", " from", " the", " fake", " upstream.")
_DIRECTIVE = re.compile(r"rid=([^\s\"\\]+)\s+plan=([^\s\"\\]+)")
_REASONS = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}

Responder = Callable[["Exchange"], Awaitable[bool]]
"""Writes a whole response; returns whether the connection may serve another request."""


@dataclass(frozen=True)
class Behaviour:
    """What the upstream does with one request.

    Timing: ``headers_delay_s`` before the status line; ``first_delay_s`` after
    the headers of a stream, before its first event (a whole answer waits it
    too); ``interval_s`` between events (a whole answer waits it once per piece).
    Every wait ends early when the gateway closes the connection.

    ``fail_after``: the number of events written (the first, role or
    ``message_start``, is one) before the answer breaks; a whole answer breaks
    after half a body. ``drop`` says how: ``"close"`` (a FIN mid-body),
    ``"reset"`` (a TCP reset) or ``"end"`` (a stream's body ends cleanly
    without its end marker; a whole answer is reset). ``framing`` is
    ``"chunked"`` (a drop leaves the body incomplete) or ``"eof"`` (the body
    ends with the connection, so a drop looks like a clean end).

    ``status`` other than 200 answers the provider's error envelope with
    ``error_message`` (and ``Retry-After: retry_after``). ``echo`` answers
    ``"echo: <last user text>"`` instead of ``pieces``. ``respond``, when
    set, replaces all of this.
    """

    pieces: tuple[str, ...] = DEFAULT_PIECES
    echo: bool = False
    status: int = 200
    error_message: str = "the fake upstream failed on purpose"
    retry_after: str | None = None
    headers_delay_s: float = 0.0
    first_delay_s: float = 0.0
    interval_s: float = 0.0
    fail_after: int | None = None
    drop: Literal["close", "reset", "end"] = "close"
    framing: Literal["chunked", "eof"] = "chunked"
    usage: bool = True
    usage_null_on_chunks: bool = True  # OpenAI: "usage": null on every chunk once usage is asked
    prompt_tokens: int = 9
    completion_tokens: int = 42
    respond: Responder | None = None

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


def directive(rid: str, plan: str) -> str:
    """The text that steers every attempt of request ``rid`` (see the module docstring)."""
    return f"rid={rid} plan={plan}"


@dataclass
class Received:
    """One request the upstream received, and what became of its answer."""

    method: str
    path: str  # with its query string
    headers: dict[str, str]
    raw_body: bytes
    at: float  # time.monotonic() when the request was read
    wall: float  # time.time() then
    body: Any = None
    rid: str = "-"
    number: int = 1  # 1 for the first attempt of this rid
    action: str = ""  # the plan's action for this attempt; "" without a directive
    status: int | None = None
    retry_after: str | None = None  # the Retry-After header sent, if any
    first_event_at: float | None = None
    events_sent: int = 0
    completed_at: float | None = None  # the whole answer was written
    dropped_at: float | None = None  # the upstream broke the answer on purpose
    closed_by_peer_at: float | None = None  # the gateway closed it before the answer ended
    ended_at: float | None = None  # however it ended
    done: threading.Event = field(default_factory=threading.Event, repr=False)

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

    @property
    def last_user_text(self) -> str:
        messages = self.body.get("messages") if isinstance(self.body, dict) else None
        for message in reversed(messages or []):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, str):
                    return content
                parts = content if isinstance(content, list) else []
                return " ".join(p.get("text", "") for p in parts if isinstance(p, dict))
        return ""

    def wait_closed(self, timeout: float) -> bool:
        """Wait until the answer ended however it ended (completed, dropped, or peer closed)."""
        return self.done.wait(timeout)


# -- actions: the words of a plan ------------------------------------------------------

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
    """``ok[:PIECES[:INTERVAL]]``: an answer of ``PIECES`` (5) pieces ``p0 p1 ...``, ``INTERVAL`` s apart."""
    pieces = int(args[0]) if args else 5
    interval = float(args[1]) if len(args) > 1 else 0.0
    return Behaviour(
        pieces=tuple(f"p{i} " for i in range(pieces)),
        interval_s=interval,
        prompt_tokens=7,
        completion_tokens=pieces,
    )


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
        await exchange.write_head(200, _stream_headers("chunked"))
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


def _fixed(status: int, content_type: str, body: bytes) -> Behaviour:
    async def respond(exchange: Exchange) -> bool:
        headers = {"content-type": content_type, "content-length": str(len(body))}
        return await exchange.send(status, headers, body)

    return Behaviour(respond=respond)


def _retry_after(value: str) -> str:
    if value.startswith("date+"):
        return email.utils.formatdate(time.time() + float(value[5:]), usegmt=True)
    return value


# -- dialects: the shapes of answers, per path ------------------------------------------


class Dialect(Protocol):
    def whole(self, request: Received, behaviour: Behaviour) -> dict[str, Any]: ...

    def events(self, request: Received, behaviour: Behaviour) -> list[bytes]:
        """Every SSE event of a stream, its end marker last."""
        ...

    def error(self, status: int, message: str) -> dict[str, Any]: ...


def _text_pieces(request: Received, behaviour: Behaviour) -> tuple[str, ...]:
    if not behaviour.echo:
        return behaviour.pieces
    words = ("echo: " + request.last_user_text).split(" ")
    return tuple(word if i == 0 else " " + word for i, word in enumerate(words))


class OpenAIChat:
    def whole(self, request: Received, behaviour: Behaviour) -> dict[str, Any]:
        text = "".join(_text_pieces(request, behaviour))
        answer: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": CREATED,
            "model": request.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
        }
        if behaviour.usage:
            answer["usage"] = behaviour.usage_dict
        return answer

    def events(self, request: Received, behaviour: Behaviour) -> list[bytes]:
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
        events += [chunk(choice({"content": p})) for p in _text_pieces(request, behaviour)]
        events.append(chunk(choice({}, "stop")))
        if include_usage and behaviour.usage:
            events.append(chunk([], behaviour.usage_dict))
        events.append(b"data: [DONE]\n\n")
        return events

    def error(self, status: int, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": "server_error"}}


class OpenAIEmbeddings(OpenAIChat):
    """One vector per input, ``[len(input), 0.5, -0.5]``; usage is ``prompt_tokens``."""

    def whole(self, request: Received, behaviour: Behaviour) -> dict[str, Any]:
        given = request.body.get("input") if isinstance(request.body, dict) else None
        inputs = given if isinstance(given, list) else [given]
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(str(item))), 0.5, -0.5]}
            for i, item in enumerate(inputs)
        ]
        tokens = behaviour.prompt_tokens
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {"object": "list", "data": data, "model": request.model, "usage": usage}


_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class AnthropicMessages:
    def whole(self, request: Received, behaviour: Behaviour) -> dict[str, Any]:
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": [{"type": "text", "text": "".join(_text_pieces(request, behaviour))}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": behaviour.prompt_tokens,
                "output_tokens": behaviour.completion_tokens,
            },
        }

    def events(self, request: Received, behaviour: Behaviour) -> list[bytes]:
        """``message_start``, one text block in deltas, ``message_delta`` with usage, ``message_stop``."""
        start = self.whole(request, behaviour)
        start.update(content=[], stop_reason=None)
        start["usage"] = {"input_tokens": behaviour.prompt_tokens, "output_tokens": 1}
        events: list[dict[str, Any]] = [
            {"type": "message_start", "message": start},
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            {"type": "ping"},
        ]
        events += [
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
            for p in _text_pieces(request, behaviour)
        ]
        events += [
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": behaviour.completion_tokens},
            },
            {"type": "message_stop"},
        ]
        return [b"event: %s\ndata: %s\n\n" % (e["type"].encode(), orjson.dumps(e)) for e in events]

    def error(self, status: int, message: str) -> dict[str, Any]:
        kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}


DIALECTS: dict[str, Dialect] = {
    "/chat/completions": OpenAIChat(),
    "/embeddings": OpenAIEmbeddings(),
    "/messages": AnthropicMessages(),
}
"""Answer shapes by the path's last segments; a new API is one more entry."""


def dialect_for(path: str) -> Dialect | None:
    route = path.split("?", 1)[0]
    return next((d for suffix, d in DIALECTS.items() if route.endswith(suffix)), None)


# -- one request and its answer ------------------------------------------------------------


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
        await self.write_head(200, _stream_headers(behaviour.framing))
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


def _stream_headers(framing: str) -> dict[str, str]:
    headers = {"content-type": "text/event-stream", "cache-control": "no-cache"}
    if framing == "chunked":
        headers["transfer-encoding"] = "chunked"
    else:
        headers["connection"] = "close"
    return headers


# -- the server ------------------------------------------------------------------------------


class FakeUpstream(LoopbackServer):
    """The fake provider; a context manager, started on a free loopback port."""

    def __init__(self, default: Behaviour | None = None) -> None:
        super().__init__()
        self.default = default or Behaviour()
        self.behaviours: dict[str, Behaviour] = {}
        self.requests: list[Received] = []
        self.by_rid: dict[str, list[Received]] = defaultdict(list)
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def behave(
        self, model: str | None = None, behaviour: Behaviour | None = None, **changes: Any
    ) -> Behaviour:
        """Set the behaviour for requests naming upstream ``model`` (the default when ``None``)."""
        chosen = replace(behaviour or Behaviour(), **changes)
        if model is None:
            self.default = chosen
        else:
            self.behaviours[model] = chosen
        return chosen

    def forget_behaviours(self) -> None:
        """Back to the default ``Behaviour()`` for every model."""
        self.default = Behaviour()
        self.behaviours.clear()

    def received(self, model: str | None = None) -> list[Received]:
        return [r for r in self.requests if model is None or r.model == model]

    def of(self, rid: str) -> list[Received]:
        """Every attempt of the client request ``rid``, in order."""
        with self._lock:
            return list(self.by_rid.get(rid, ()))

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.requests)

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await _read_request(reader)
            if request is None:
                return
            behaviour = self._choose(request)
            try:
                keep_alive = await self._answer(request, behaviour, reader, writer)
            finally:
                request.ended_at = time.monotonic()
                request.done.set()
            if not keep_alive:
                return

    def _choose(self, request: Received) -> Behaviour:
        """Record the request and pick its behaviour: directive, then model, then default."""
        found = _DIRECTIVE.search(request.raw_body.decode("utf-8", "replace"))
        with self._lock:
            if found:
                request.rid, plan = found.groups()
                request.number = len(self.by_rid[request.rid]) + 1
                actions = plan.split(",")
                request.action = actions[min(request.number, len(actions)) - 1]
            self.by_rid[request.rid].append(request)
            self.requests.append(request)
        if request.action:
            name, *args = request.action.split(":")
            if name not in ACTIONS:
                raise ValueError(f"unknown action {request.action!r}")
            return ACTIONS[name](args)
        return self.behaviours.get(request.model or "", self.default)

    async def _answer(
        self,
        request: Received,
        behaviour: Behaviour,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        dialect = dialect_for(request.path)
        exchange = Exchange(request, behaviour, dialect or OpenAIChat(), reader, writer)
        try:
            if request.method == "GET" and request.path.endswith("/models"):
                return await exchange.send_json(200, {"object": "list", "data": []})
            if request.method != "POST" or dialect is None:
                return await exchange.send_json(404, {"error": {"message": "no route"}})
            return await exchange.answer()
        except ConnectionError:
            return exchange.peer_left()


async def _read_request(reader: asyncio.StreamReader) -> Received | None:
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
    received = Received(method, path, headers, raw, time.monotonic(), time.time())
    with contextlib.suppress(orjson.JSONDecodeError):
        received.body = orjson.loads(raw) if raw else None
    return received


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
