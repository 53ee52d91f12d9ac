"""Streamed answers: open the upstream stream, then relay it as server-sent events.

Fallbacks apply until the first byte leaves the gateway: ``open_stream`` tries
the targets in order and pulls each one's first chunk before committing, so a
target that fails before its first chunk costs the client nothing. After that
the relay forwards each chunk as it arrives. How a stream ends:

- ``completed``: the upstream sent ``[DONE]``; so does the gateway.
- ``upstream_error``: the upstream failed mid-stream; the client gets one SSE
  event holding an OpenAI error object, and no ``[DONE]``.
- ``client_disconnected``: the client left; the upstream response is closed at
  once, and the tokens seen so far are counted.

The token reservation is reconciled and the telemetry line emitted when the
stream ends, however it ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from . import tokens
from .models import ChatCompletionRequest
from .providers import AttemptFailed, ChunkStream, Usage
from .providers.base import Chunk
from .service import Gateway, Ticket, usage_of
from .telemetry import CallRecord, Telemetry

_DONE = b"data: [DONE]\n\n"


class OpenedStream:
    """A committed upstream stream and its first chunk (``None`` if it sent none)."""

    def __init__(
        self, stream: ChunkStream, chunks: AsyncIterator[Chunk], first: Chunk | None
    ) -> None:
        self.stream = stream
        self.chunks = chunks
        self.first = first


async def open_stream(
    gateway: Gateway, record: CallRecord, ticket: Ticket, body: dict[str, Any]
) -> OpenedStream:
    """Try the targets until one has produced its first chunk."""

    async def first_chunk(provider: Any, model: str) -> OpenedStream:
        stream = await provider.open_stream(model, body)
        chunks = aiter(stream)
        try:
            first = await anext(chunks, None)
        except BaseException:
            await stream.aclose()
            raise
        return OpenedStream(stream, chunks, first)

    record.stream = True
    try:
        return await gateway.attempt(record, ticket, first_chunk)
    except BaseException:
        await gateway.limiter.reconcile(ticket.reservation, 0)
        raise


class Relay:
    """The SSE body of one stream, and its accounting when the stream ends however it ends.

    ``finish`` is idempotent and also called by ``SSEResponse`` after sending,
    so a stream whose body was never iterated (the client left before the
    headers went out) is still closed, counted and logged.
    """

    def __init__(
        self,
        gateway: Gateway,
        telemetry: Telemetry,
        record: CallRecord,
        ticket: Ticket,
        request: ChatCompletionRequest,
        opened: OpenedStream,
    ) -> None:
        self._gateway = gateway
        self._telemetry = telemetry
        self._record = record
        self._ticket = ticket
        self._opened = opened
        self._include_usage = bool(request.stream_options and request.stream_options.include_usage)
        self._usage: Usage | None = None
        self._texts: list[str] = []
        self._ended = False
        self._finished = False

    async def events(self) -> AsyncIterator[bytes]:
        record, ticket, texts = self._record, self._ticket, self._texts
        chunk_id, created = "chatcmpl-" + record.request_id, int(time.time())
        try:
            chunk = self._opened.first
            while chunk is not None:
                self._usage = usage_of(chunk.get("usage")) or self._usage
                choices = chunk.get("choices")
                _collect_text(choices, texts)
                chunk["model"] = ticket.alias
                if not self._include_usage:
                    chunk.pop("usage", None)  # only the gateway asked for it; OpenAI omits it then
                chunk_id, created = chunk.get("id", chunk_id), chunk.get("created", created)
                if choices or self._include_usage:  # the usage-only chunk only when asked for
                    if record.ttft_ms is None:
                        record.ttft_ms = _elapsed_ms(record)
                    yield b"data: " + orjson.dumps(chunk) + b"\n\n"
                chunk = await anext(self._opened.chunks, None)
            if self._include_usage and self._usage is None:
                self._usage = _approximate(ticket, texts)
                usage_chunk = _usage_chunk(chunk_id, created, ticket.alias, self._usage)
                yield b"data: " + orjson.dumps(usage_chunk) + b"\n\n"
            self._ended = True
            yield _DONE
        except AttemptFailed as exc:
            self._ended = True
            record.outcome, record.status, record.error_type = (
                "upstream_error",
                502,
                "upstream_error",
            )
            yield _error_event(f"The upstream stream failed: {exc.message}.")
        finally:
            await self.finish()

    async def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        record = self._record
        if not self._ended:
            record.outcome = "client_disconnected"
        try:
            await self._opened.stream.aclose()
        finally:
            usage = self._usage or _approximate(self._ticket, self._texts)
            record.prompt_tokens, record.completion_tokens = (
                usage.prompt_tokens,
                usage.completion_tokens,
            )
            await self._gateway.limiter.reconcile(self._ticket.reservation, usage.total_tokens)
            self._telemetry.emit(record)


class SSEResponse:
    """The ASGI response of a stream: events out as they come, upstream cut when the client leaves.

    A watcher task waits for the server's ``http.disconnect`` and cancels the
    sending task, which is then awaiting the upstream or the client: the
    relay's ``finish`` closes the upstream at once. (Plain asyncio tasks
    rather than an anyio task group per stream: same behaviour, less work.)
    """

    def __init__(self, relay: Relay, headers: dict[str, str]) -> None:
        self._relay = relay
        self._headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()),
        ]
        self._disconnected = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sender = asyncio.current_task()
        assert sender is not None
        watcher = asyncio.create_task(self._watch(receive, sender))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self._headers})
            async for event in self._relay.events():
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not self._disconnected:
                raise
            sender.uncancel()  # our own cancellation: the client left, nothing more to do
        except OSError:
            pass  # the connection broke under a send: the client is gone
        finally:
            watcher.cancel()
            await self._relay.finish()

    async def _watch(self, receive: Receive, sender: asyncio.Task[None]) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._disconnected = True
        sender.cancel()


def _collect_text(choices: object, texts: list[str]) -> None:
    if not isinstance(choices, list):
        return
    for choice in choices:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and isinstance(delta.get("content"), str):
            texts.append(delta["content"])


def _approximate(ticket: Ticket, texts: list[str]) -> Usage:
    return Usage(ticket.prompt_estimate, tokens.completion_tokens("".join(texts)))


def _usage_chunk(chunk_id: str, created: int, alias: str, usage: Usage) -> dict[str, Any]:
    return {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": alias,
        "choices": [],
        "usage": usage.as_dict(),
    }


def _error_event(message: str) -> bytes:
    error = {"error": {"type": "upstream_error", "message": message, "param": None, "code": None}}
    return b"data: " + orjson.dumps(error) + b"\n\n"


def _elapsed_ms(record: CallRecord) -> float:
    return round((time.perf_counter() - record.started) * 1000, 3)
