"""Streamed answers: open the upstream stream, then relay it as server-sent events.

Fallbacks apply until the first byte leaves the gateway: ``open_stream`` tries
the targets in order and pulls each one's first chunk before committing, so a
target that fails before its first chunk costs the client nothing. After that
the relay forwards each event as it arrives, framed by an ``Encoder`` for the
client's dialect (the edge's ``encoders``: passed through as the provider
sent it, or translated), and reads the stream's usage and text through the
upstream call's operation. How a stream ends:

- ``completed``: the upstream's stream ended properly; so does the client's
  (OpenAI: ``[DONE]``).
- ``upstream_error``: the upstream failed mid-stream; the client gets one
  error event (OpenAI: an error object and no ``[DONE]``).
- ``client_disconnected``: the client left; the upstream response is closed at
  once, and the tokens seen so far are counted. Also a client the gateway's
  HTTP layer cut because it took none of the answer for
  ``response_write_timeout_s`` (status 499, ``error_type`` ``client_too_slow``).
- ``interrupted``: the gateway is shutting down and the drain deadline passed;
  the client gets one error event (type ``service_unavailable``), as above.

The token reservation is reconciled, the cost charged, the policies'
response phase run and the telemetry line emitted when the stream ends,
however it ends. A stream keeps what that needs, not what it relayed: the
upstream's usage, a running count of the words relayed (the approximation
when the upstream reports no usage), and the text itself only when a
response-phase rule will read it (a hook, ``log_payload``), up to the
answering provider's ``max_response_bytes`` characters.

The cost cannot travel in a response header (the headers leave before the
answer); it is in the telemetry line and, on the OpenAI route when the
client asked for usage, in the final usage chunk as ``usage.cost_usd``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

from ..config.sections import DEFAULT_MAX_RESPONSE_BYTES
from ..errors import GatewayError
from ..observability.telemetry import CallRecord, Telemetry
from ..providers import AttemptFailed, Event, Usage
from .admission import Ticket
from .gateway import Gateway
from .settlement import wants_text
from .tokens import WordCount
from .upstream import Inbound, OpenedStream, open_events

__all__ = ["Encoder", "OpenedStream", "Relay", "open_stream"]


async def open_stream(
    gateway: Gateway, record: CallRecord, ticket: Ticket, inbound: Inbound
) -> OpenedStream:
    """Try the targets until one has produced its first event."""
    record.stream = True
    async with gateway.settling(record, ticket):
        return await gateway.attempt(
            record, ticket, lambda provider, model: open_events(inbound, provider, model)
        )


class Encoder(Protocol):
    """How a stream is framed for the client's dialect (the edge's encoders)."""

    def event(self, event: Event) -> bytes:
        """The bytes to send for one upstream event (empty: nothing)."""
        ...

    def end(self, usage: Usage, reported: bool) -> bytes:
        """The bytes that end a complete stream; ``reported``: the upstream gave usage."""
        ...

    def failed(
        self, message: str, kind: str = "upstream_error", event: Event | None = None
    ) -> bytes:
        """The one event that ends a stream early: its upstream failed midway (or ``kind``);
        ``event`` is the upstream's own error event, when it sent one."""
        ...


class Relay:
    """The SSE body of one stream, and its accounting when the stream ends however it ends.

    ``finish`` is idempotent and also called by the edge's ``SSEResponse`` after sending,
    so a stream whose body was never iterated (the client left before the
    headers went out) is still closed, counted and logged.
    """

    def __init__(
        self,
        gateway: Gateway,
        telemetry: Telemetry,
        record: CallRecord,
        ticket: Ticket,
        encoder: Encoder,
        opened: OpenedStream,
        body: dict[str, Any],
    ) -> None:
        self._gateway = gateway
        self._body = body
        self._telemetry = telemetry
        self._record = record
        self._ticket = ticket
        self._opened = opened
        self._encoder = encoder
        self._usage: Usage | None = None
        self._words = WordCount()
        self._text = _Text(_text_bound(gateway, record)) if wants_text(ticket) else None
        self._ended = False
        self._finished = False

    async def events(self) -> AsyncIterator[bytes]:
        """The stream's bytes for the client: what each upstream read completed, as one piece."""
        record, encoder, opened = self._record, self._encoder, self._opened
        batches = opened.events
        batch = opened.first
        opened.first = []
        try:
            while True:
                data = self._relayed(batch)
                del batch  # not kept while the next batch is awaited
                if data:
                    if record.ttft_ms is None:
                        record.ttft_ms = _elapsed_ms(record)
                    yield data
                try:
                    batch = await batches.__anext__()
                except StopAsyncIteration:
                    break
            reported = self._usage is not None
            self._usage = self._usage or self._approximate()
            self._ended = True
            yield encoder.end(self._usage, reported)
        except AttemptFailed as exc:
            self._ended = True
            record.outcome, record.status, record.error_type = (
                "upstream_error",
                502,
                "upstream_error",
            )
            yield encoder.failed(
                f"The upstream stream failed: {exc.message}.", "upstream_error", exc.event
            )
        finally:
            await self.finish()

    def _relayed(self, batch: list[Event]) -> bytes:
        """Count what ``batch`` says (usage, text) and frame it for the client."""
        op, encoder = self._opened.op, self._encoder
        pieces = []
        for event in batch:
            parsed = event.json
            if parsed is not None:
                self._usage = op.stream_usage(parsed, self._usage)
                text = op.stream_text(parsed)
                if text:
                    self._words.add(text)
                    if self._text is not None:
                        self._text.add(text)
            piece = encoder.event(event)
            if piece:
                pieces.append(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def interrupt(self, message: str) -> bytes:
        """End the stream for the gateway's own reason (shutdown): the error event to send.

        Recorded as ``interrupted`` (503) before the sending task is cancelled,
        so ``finish`` logs it as such rather than as a client leaving.
        """
        self._ended = True
        record = self._record
        record.outcome, record.status, record.error_type = (
            "interrupted",
            503,
            "service_unavailable",
        )
        return self._encoder.failed(message, "service_unavailable")

    def client_cut(self, error: GatewayError) -> None:
        """The HTTP layer cut the client for ``error`` (too slow): the end is the client's fault.

        A stream already ended for the gateway's or the upstream's reason keeps that reason.
        """
        record = self._record
        if record.outcome == "completed":
            self._ended = True
            record.outcome, record.status, record.error_type = (
                "client_disconnected",
                error.status,
                error.type,
            )

    async def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        record = self._record
        if not self._ended:
            record.outcome = "client_disconnected"
        gateway = self._gateway
        try:
            await self._opened.stream.aclose()
        finally:
            try:
                usage = self._usage or self._approximate()
                await gateway.settle(record, self._ticket, usage)
                try:
                    text = self._text.value() if self._text is not None else None
                    await gateway.after(record, self._ticket, self._body, None, text)
                except GatewayError as exc:
                    # The answer has been sent: a response-phase refusal can only be recorded.
                    record.error_type = exc.type
            finally:
                gateway.leave()
                self._telemetry.emit(record)

    def _approximate(self) -> Usage:
        return Usage(self._ticket.prompt_estimate, self._words.count)


class _Text:
    """The text a response-phase rule will read: at most ``bound`` characters of it."""

    __slots__ = ("_left", "_pieces")

    def __init__(self, bound: int) -> None:
        self._pieces: list[str] = []
        self._left = bound

    def add(self, piece: str) -> None:
        if self._left > 0:
            piece = piece[: self._left]
            self._pieces.append(piece)
            self._left -= len(piece)

    def value(self) -> str:
        return "".join(self._pieces)


def _text_bound(gateway: Gateway, record: CallRecord) -> int:
    spec = gateway.config.providers.get(record.provider or "")
    return spec.max_response_bytes if spec is not None else DEFAULT_MAX_RESPONSE_BYTES


def _elapsed_ms(record: CallRecord) -> float:
    return round((time.perf_counter() - record.started) * 1000, 3)
