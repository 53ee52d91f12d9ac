"""One attempt's upstream call: the request passed through, or translated, for its target.

The request travels in its inbound operation (``Inbound``). Each attempt asks
``translate.pick`` for the target's provider: the same operation passes
through (the client's bytes as they came, model replaced, when the gateway
changed nothing in them), another goes through the one translator for the
pair. A translator's refusal (``UnsupportedField``) is raised before any
upstream call, so the attempt loop can try a target that takes the request
as it is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..providers import AttemptFailed, Event, EventStream, Outbound, Provider, Reply
from ..providers.operations import Operation
from ..translate import Translator, pick


@dataclass(slots=True)
class Inbound:
    """The client's request: its operation, its body, and what may pass through as it came.

    ``raw`` is the body's bytes as the client sent them, ``None`` once the
    gateway changed the body (a policy, the client's token cap); ``headers``
    the client's headers a provider may take (``anthropic-beta``...).
    """

    op: Operation
    body: dict[str, Any]
    raw: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    def outbound(self, body: dict[str, Any] | None = None) -> Outbound:
        """The pass-through request; ``body``: a changed body (so the bytes cannot go)."""
        if body is not None:
            return Outbound(body, headers=self.headers)
        return Outbound(self.body, self.raw, self.model, self.headers)


@dataclass(slots=True)
class Called:
    """A whole answer from one attempt, and how it was reached (``translator``: ``None``
    when it was passed through)."""

    reply: Reply
    op: Operation
    translator: Translator | None


async def call(inbound: Inbound, provider: Provider, model: str) -> Called:
    """One non-streamed attempt on ``provider``; raises what the provider raises, and
    ``AttemptFailed`` for an answer its operation cannot use."""
    translator = pick(inbound.op, provider)
    if translator is None:
        op, request = inbound.op, inbound.outbound()
    else:
        op = translator.outbound
        request = Outbound(
            translator.request(inbound.body, model, provider), headers=inbound.headers
        )
    reply = await provider.call(op, model, request)
    complaint = op.complaint(reply.data)
    if complaint is not None:
        raise AttemptFailed("bad_response", f"provider {provider.name} {complaint}")
    return Called(reply, op, translator)


class OpenedStream:
    """A committed upstream stream, its first batch of events (empty if it sent none), the
    operation it speaks and the translator it goes through (``None``: passed through)."""

    __slots__ = ("events", "first", "op", "stream", "translator")

    def __init__(
        self,
        stream: EventStream,
        events: AsyncIterator[list[Event]],
        first: list[Event],
        op: Operation,
        translator: Translator | None,
    ) -> None:
        self.stream = stream
        self.events = events
        self.first = first
        self.op = op
        self.translator = translator


async def open_events(inbound: Inbound, provider: Provider, model: str) -> OpenedStream:
    """One streamed attempt on ``provider``, committed once its first events have arrived."""
    translator = pick(inbound.op, provider)
    if translator is None:
        op = inbound.op
        changed = op.stream_request(inbound.body)
        request = inbound.outbound(changed)
    else:
        op = translator.outbound
        body = translator.request(inbound.body, model, provider)
        request = Outbound(op.stream_request(body) or body, headers=inbound.headers)
    stream = await provider.open(op, model, request)
    events = aiter(stream)
    try:
        first: list[Event] = await anext(events, [])
    except BaseException:
        await stream.aclose()
        raise
    return OpenedStream(stream, events, first, op, translator)
