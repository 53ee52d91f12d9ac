"""The provider seam: what an adapter does, and how an attempt fails.

An adapter passes one operation's body to its provider and hands back what
the provider answered, untranslated: the bytes of a whole answer (and the
object they hold), or the events of a stream as they came. It sets the model,
its own credentials and the headers it owns; translation between dialects is
the pipeline's choice, not the adapter's (``translate``). ``speaks`` is the
set of operations (``providers.operations``) its provider takes.

It sends ``httpx.Request``s straight to the pooled httpx transport
(``httpx.AsyncBaseTransport``, ``Http1Transport`` in production) made for its
provider at start-up, with no ``httpx.AsyncClient`` in between; ``Providers``
owns the transports and closes them (at shutdown, or when a reload retires
the gateway that used them).

Failures an adapter raises:
- ``AttemptFailed``: this target could not answer (timeout, connection error,
  429, 5xx, an unparseable or oversized body, the provider refusing the
  gateway's key, no free connection to it in time); another target may. Its
  ``message`` is safe to show: never a key.
- ``errors.UpstreamRejected``: the provider refused the request itself (400,
  413, 422); another target would too, so the router stops. It carries the
  provider's own error fields (``UpstreamDetail``), redacted of the key.
- ``errors.UnsupportedField``: the provider has no such operation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .operations import Operation

Chunk = dict[str, Any]


class AttemptFailed(Exception):
    """One target failed in a way another target might not.

    ``kind`` is ``timeout``, ``connect``, ``status``, ``bad_response`` or
    ``pool_exhausted`` (the gateway's own connections to it were all in use);
    ``status`` is the upstream's HTTP status where there was one;
    ``retry_after_s`` is the upstream's ``Retry-After`` when it gave a usable one;
    ``event`` the upstream's own error event when a stream reported the failure.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        event: Event | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s
        self.event = event


@dataclass(slots=True)
class Usage:
    """Token usage in one shape, whatever the dialect that reported it.

    ``prompt_tokens`` is every input token, cached or not (OpenAI's
    ``prompt_tokens``; Anthropic's ``input_tokens`` plus its cache reads and
    writes); ``cache_read_tokens`` and ``cache_write_tokens`` are the parts of
    it read from and written to the provider's prompt cache.
    ``completion_tokens`` is every output token, ``reasoning_tokens`` included.
    """

    prompt_tokens: int
    completion_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def uncached_prompt_tokens(self) -> int:
        """The input tokens charged at the plain input rate."""
        return max(0, self.prompt_tokens - self.cache_read_tokens - self.cache_write_tokens)

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(slots=True)
class Outbound:
    """One upstream request: its body, and what may travel as it came.

    ``body`` is the request in the operation's shape; the adapter sends it
    with ``model`` set to the target's. ``raw`` is the client's own bytes when
    the body is unchanged since they were parsed (``raw_model`` being the
    model they name), so that they can go out as they came, model replaced.
    ``headers`` are the client's headers the provider's API defines and the
    adapter forwards (``anthropic-beta``, ``anthropic-version``); never auth.
    """

    body: dict[str, Any]
    raw: bytes | None = None
    raw_model: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Reply:
    """A whole 200 answer: the object, and its bytes as the provider sent them (if any)."""

    data: dict[str, Any]
    raw: bytes | None = None


@dataclass(slots=True)
class Event:
    """One server-sent event: its ``event`` name, its ``data`` bytes, and their JSON object
    (``None`` when the data is not an object, as OpenAI's ``[DONE]``)."""

    name: bytes | None
    data: bytes
    json: dict[str, Any] | None


class EventStream(Protocol):
    """An open upstream stream of ``Event``s, as the provider sent them.

    Iteration yields the events in the batches they arrived in (what one read
    from the upstream completed, in order; never an empty batch), so that the
    caller can pass on together what came together. It ends after the event
    that completes the stream (the operation's ``stream_end``; OpenAI's
    ``[DONE]`` itself is not yielded); an upstream that stops before it, or
    sends an error event, raises ``AttemptFailed``. ``aclose`` releases the
    upstream connection at once and is safe to call more than once; the
    caller must call it, also when it stops early.
    """

    def __aiter__(self) -> AsyncIterator[list[Event]]: ...

    async def aclose(self) -> None: ...


class Provider(Protocol):
    name: str
    stub: bool
    # ``openai``, ``azure``, ``anthropic`` or ``stub``; ``who`` names it in messages.
    kind: str
    who: str
    # The operations it takes as they are; others are translated or refused.
    speaks: frozenset[str]
    # What an Anthropic body asks for when the client gave no max_tokens.
    default_max_tokens: int

    async def call(self, op: Operation, model: str, request: Outbound) -> Reply:
        """One non-streamed call of ``op``: the provider's 200 answer.

        Raises ``AttemptFailed``, ``UpstreamRejected`` or ``UnsupportedField``.
        """
        ...

    async def open(self, op: Operation, model: str, request: Outbound) -> EventStream:
        """Start a streamed call of ``op``; returns once the upstream accepted it.

        Raises ``AttemptFailed`` or ``UpstreamRejected`` before returning.
        """
        ...
