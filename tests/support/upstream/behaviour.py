"""What the fake upstream does with a request (``Behaviour``, ``Canned``); what it recorded."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from tests.support.upstream.exchange import Exchange

DEFAULT_PIECES = ("Hello", " from", " the", " fake", " upstream.")

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


@dataclass(frozen=True)
class Canned:
    """A fixed answer queued for a path (``FakeUpstream.answer``), written as given.

    ``json``: a whole answer with ``status``. ``events``: a stream, one SSE event
    per item, framed ``event: <type>`` then ``data: <json>`` when ``named``
    (Anthropic, Responses), else ``data: <json>`` ending with ``data: [DONE]``
    (chat). Both are encoded by ``json.dumps``, whose spacing differs from the
    gateway's own encoder, so a body re-encoded on the way shows.
    """

    status: int = 200
    json: Any = None
    events: list[dict[str, Any]] | None = None
    named: bool = True


def directive(rid: str, plan: str) -> str:
    """The text that steers every attempt of request ``rid`` (see the module docstring)."""
    return f"rid={rid} plan={plan}"


@dataclass
class Received:
    """One request the upstream received, and what became of its answer."""

    method: str
    path: str  # with its query string
    headers: dict[str, str]  # names in lower case, as received
    raw: bytes  # the body's exact bytes
    at: float  # time.monotonic() when the request was read
    wall: float  # time.time() then
    body: Any = None
    rid: str = "-"
    number: int = 1  # 1 for the first attempt of this rid
    action: str = ""  # the plan's action for this attempt; "" without a directive
    canned: Canned | None = None  # the queued answer it got, if any
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
    def route(self) -> str:
        """The path without its query string."""
        return self.path.split("?", 1)[0]

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
