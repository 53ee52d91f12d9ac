"""What every HTTP adapter shares: the pass-through call and stream, and mapping failures.

An adapter says where an operation goes (``url``) and with which headers
(``headers``); ``call`` and ``open`` do the rest for every operation: the
body goes out with the target's model (the client's bytes as they came when
they may), the answer comes back as the provider sent it.

Foreign errors are mapped here, at the seam: httpx and transport exceptions
become ``AttemptFailed``, upstream statuses become ``AttemptFailed`` or
``UpstreamRejected`` (with the provider's own error fields). No upstream text
that echoes the provider key is shown.

What an answer may cost is bounded here too (``Bounds``, from the provider's
config): a non-streamed answer of at most ``max_response_bytes`` (cut where it
passes, or refused from its ``Content-Length``), an error body of at most
64 KiB (only its fields are used), a stream event of at most
``max_event_bytes``, and no body in a ``Content-Encoding`` the gateway did not
ask for (it asks for ``identity``: nothing is ever decompressed).
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from ..config.sections import (
    DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_POOL_TIMEOUT_S,
)
from ..errors import UnsupportedField, UpstreamDetail, UpstreamRejected
from .base import AttemptFailed, Event, Outbound, Reply
from .operations import Operation, with_model
from .sse import EventTooLarge, SSEDecoder

# Statuses that mean the request itself is wrong: every target would refuse it.
_REQUEST_FAULTS = frozenset({400, 413, 422})
# Error types of an error event in a stream, as the HTTP status they stand for.
_ERROR_STATUS = {"overloaded_error": 529, "rate_limit_error": 429, "api_error": 500}
_SECRET_PIECE = 8
# An error answer is read for its fields only.
_MAX_ERROR_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Bounds:
    """What one answer of a provider may cost the gateway (the provider's config fields)."""

    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    pool_timeout_s: float = DEFAULT_POOL_TIMEOUT_S


DEFAULT_BOUNDS = Bounds()


class HTTPProvider:
    """Sends ``httpx.Request``s to the provider's transport itself.

    An ``httpx.AsyncClient`` in between would add cookie, auth, redirect and URL
    merging work that the gateway does not use, on every call.
    """

    stub = False
    kind = "http"
    dialect = "openai"  # the shape of the provider's error bodies
    speaks: frozenset[str] = frozenset()
    default_max_tokens = 4096

    def __init__(
        self,
        name: str,
        transport: httpx.AsyncBaseTransport,
        api_key: str | None,
        timeout_s: float,
        bounds: Bounds = DEFAULT_BOUNDS,
    ) -> None:
        self.name = name
        self.who = f"provider {name!r} ({self.kind})"
        self._transport = transport
        self._key = api_key
        self._timeout_s = timeout_s
        self._bounds = bounds
        # The wait for a free connection is part of the attempt: never longer than it.
        self._pool_timeout_s = min(bounds.pool_timeout_s, timeout_s)
        timeout = httpx.Timeout(timeout_s, pool=self._pool_timeout_s)
        self._extensions = {"timeout": timeout.as_dict()}

    def url(self, op: Operation, model: str) -> httpx.URL:
        """Where ``op`` goes for ``model``."""
        raise NotImplementedError

    def headers(self, request: Outbound, stream: bool) -> httpx.Headers:
        """The headers of one call: the provider's own, and what it forwards of the client's."""
        raise NotImplementedError

    def payload(self, op: Operation, model: str, request: Outbound) -> bytes:
        """The body to send: the client's bytes with the model replaced when they may go as
        they came, else the body serialised with ``model`` set."""
        if request.raw is not None and request.raw_model is not None:
            if request.raw_model == model:
                return request.raw
            replaced = with_model(request.raw, request.raw_model, model)
            if replaced is not None:
                return replaced
        return orjson.dumps({**request.body, "model": model})

    def _check(self, op: Operation) -> None:
        if op.name not in self.speaks:
            raise UnsupportedField(self.who, "model", f"it has no {op.name} API")

    async def call(self, op: Operation, model: str, request: Outbound) -> Reply:
        """One non-streamed call of ``op``: the 200 answer, its bytes as sent."""
        self._check(op)
        payload = self.payload(op, model, request)
        raw, answer = await self._call_json(
            self.url(op, model), self.headers(request, False), payload
        )
        return Reply(answer, raw)

    async def open(self, op: Operation, model: str, request: Outbound) -> ResponseStream:
        """A streamed call of ``op``: its events as the provider sends them."""
        self._check(op)
        payload = self.payload(op, model, request)
        response = await self._open(self.url(op, model), self.headers(request, True), payload)
        body = response.stream
        assert isinstance(body, httpx.AsyncByteStream)  # an async transport's
        return ResponseStream(body, lambda chunks: self.events(op, chunks))

    async def events(
        self, op: Operation, body: httpx.AsyncByteStream
    ) -> AsyncIterator[list[Event]]:
        """The stream's events, in the batches one read completed, up to the one that
        completes the stream; failures raised.

        A silent upstream is cut by the transport's read timeout. One that keeps
        sending bytes without completing an event (a drip) is cut here, once it
        has been waited for the provider's timeout since its last event: only
        the time spent waiting for the upstream counts, not the time the
        consumer took (a client reading slowly is not the upstream's fault). An
        event larger than ``max_event_bytes`` fails the stream, and so does an
        end without the operation's last event.
        """
        limit = self._bounds.max_event_bytes
        decoder = SSEDecoder(limit)
        clock = asyncio.get_running_loop().time
        chunks = aiter(body)
        waited = 0.0
        try:
            while True:
                started = clock()
                try:
                    raw = await chunks.__anext__()
                except StopAsyncIteration:
                    break
                waited += clock() - started
                found = decoder.feed_named(raw)
                if not found:
                    if waited > self._timeout_s:
                        raise TimeoutError
                    continue
                waited = 0.0
                batch, ended, failure = self._batch(op, found)
                # Nothing of this read stays referenced while the next one is awaited: what
                # lives across an await outlives young garbage collections, and costs.
                del found
                if batch:
                    yield batch
                del batch
                if failure is not None:
                    raise failure
                if ended:
                    return
        except (TimeoutError, httpx.HTTPError) as exc:
            raise self._transport_failure(exc) from None
        except EventTooLarge:
            raise self.stream_failure(
                f"sent an event larger than {limit} bytes (max_event_bytes)"
            ) from None
        raise self.stream_failure(f"ended the stream without {op.last_event}")

    def _batch(
        self, op: Operation, found: list[tuple[bytes | None, bytes]]
    ) -> tuple[list[Event], bool, AttemptFailed | None]:
        """The events of one read, whether the last of them ends the stream, and the failure
        an error event among them reports (the events before it are kept)."""
        batch: list[Event] = []
        for name, data in found:
            event = None if data == b"[DONE]" else self.json_event(data)
            failure = None if event is None else self._failure(op, name, data, event)
            if failure is not None:
                return batch, False, failure
            if op.stream_end(data, event):
                if event is not None:
                    batch.append(Event(name, data, event))
                return batch, True, None
            batch.append(Event(name, data, event))
        return batch, False, None

    def _failure(
        self, op: Operation, name: bytes | None, data: bytes, event: dict[str, Any]
    ) -> AttemptFailed | None:
        """The failure an error event reports (redacted of the key); ``None`` for other events."""
        error = op.stream_error(event)
        if error is None:
            return None
        return AttemptFailed(
            "status",
            f"provider {self.name} sent an error event: {error[0]}: {self.safe(error[1])}",
            status=_ERROR_STATUS.get(error[0], 500),
            event=Event(name, self._redacted_data(data), event),
        )

    def _request(self, url: httpx.URL, headers: httpx.Headers, payload: bytes) -> httpx.Request:
        return httpx.Request(
            "POST", url, headers=headers, content=payload, extensions=self._extensions
        )

    async def _call_json(
        self, url: httpx.URL, headers: httpx.Headers, payload: bytes
    ) -> tuple[bytes, dict[str, Any]]:
        """POST and return the 200 answer, as bytes and decoded (an object); failures mapped."""
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._transport.handle_async_request(
                    self._request(url, headers, payload)
                )
                if response.status_code != 200:
                    error = await self._read_error(response)
                    raise self._status_failure(response.status_code, response.headers, error)
                content = await self._read(response)
        except (TimeoutError, httpx.HTTPError) as exc:
            raise self._transport_failure(exc) from None
        try:
            answer = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise AttemptFailed(
                "bad_response", f"provider {self.name} answered a body that is not JSON"
            ) from None
        if not isinstance(answer, dict):
            raise AttemptFailed("bad_response", f"provider {self.name} answered a non-object")
        return content, answer

    async def _open(self, url: httpx.URL, headers: httpx.Headers, payload: bytes) -> httpx.Response:
        """POST and return the 200 response, its body not read yet; failures mapped."""
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._transport.handle_async_request(
                    self._request(url, headers, payload)
                )
        except (TimeoutError, httpx.HTTPError) as exc:
            raise self._transport_failure(exc) from None
        if response.status_code != 200:
            try:
                async with asyncio.timeout(self._timeout_s):
                    content = await self._read_error(response)
            except (TimeoutError, httpx.HTTPError):
                content = b""
            raise self._status_failure(response.status_code, response.headers, content)
        try:
            self._check_encoding(response)
        except AttemptFailed:
            await response.aclose()
            raise
        return response

    async def _read(self, response: httpx.Response) -> bytes:
        """The whole body of an answer, at most ``max_response_bytes``; the response closed.

        Iterates the transport's stream directly: the gateway asks for no
        compression, so httpx's decoder layers have nothing to do. A body past
        the bound fails the attempt where it passes it: the rest is never read
        (the connection is closed), so what it costs is the bound.
        """
        limit = self._bounds.max_response_bytes
        try:
            self._check_encoding(response)
            if _declared_length(response) > limit:
                raise self._too_large(limit)
            return await _collect(response, limit, self._too_large)
        finally:
            await response.aclose()

    async def _read_error(self, response: httpx.Response) -> bytes:
        """The start of an error answer (its fields are all the gateway uses); response closed."""
        try:
            if _unasked_coding(response) is not None:
                return b""  # not readable without inflating it: no fields, then
            return await _collect(response, _MAX_ERROR_BYTES, None)
        finally:
            await response.aclose()

    def _check_encoding(self, response: httpx.Response) -> None:
        coding = _unasked_coding(response)
        if coding is not None:
            raise AttemptFailed(
                "bad_response",
                self.safe(
                    f"provider {self.name} answered in Content-Encoding {coding[:40]!r},"
                    " which the gateway did not ask for (it asks for identity)"
                ),
            )

    def _too_large(self, limit: int) -> AttemptFailed:
        return AttemptFailed(
            "bad_response",
            f"provider {self.name} answered more than {limit} bytes"
            " (max_response_bytes); the answer was cut there",
        )

    def _transport_failure(self, exc: BaseException) -> AttemptFailed:
        if isinstance(exc, httpx.PoolTimeout):
            return AttemptFailed(
                "pool_exhausted",
                f"provider {self.name} had all its connections in use"
                f" for {self._pool_timeout_s:g} s (max_connections)",
            )
        if _is_timeout(exc):
            return AttemptFailed(
                "timeout", f"provider {self.name} did not answer within {self._timeout_s:g} s"
            )
        if isinstance(exc, httpx.ConnectError):
            what = "could not be reached"
        else:
            what = "broke the connection while answering"  # reset, cut body, not HTTP
        return AttemptFailed("connect", f"provider {self.name} {what} ({type(exc).__name__})")

    def _status_failure(
        self, status: int, headers: httpx.Headers, content: bytes
    ) -> AttemptFailed | UpstreamRejected:
        detail = self.error_detail(content)
        said = f": {detail.message[:500]}" if detail is not None and detail.message else ""
        if status in _REQUEST_FAULTS:
            return UpstreamRejected(
                detail.message
                if detail is not None and detail.message
                else f"provider {self.name} refused the request ({status})",
                status=status,
                detail=detail,
            )
        return AttemptFailed(
            "status",
            f"provider {self.name} answered {status}{said}",
            status=status,
            retry_after_s=parse_retry_after(headers.get("retry-after")),
        )

    def error_detail(self, content: bytes) -> UpstreamDetail | None:
        """The provider's own error body and fields, any string quoting its key withheld."""
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            return None
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return None
        body = self._redacted(body)
        error = body["error"]

        def text(name: str) -> str | None:
            value = error.get(name)
            return value if isinstance(value, str) else None

        return UpstreamDetail(
            self.dialect, body, text("message") or "", text("type"), text("code"), text("param")
        )

    def _redacted_data(self, data: bytes) -> bytes:
        """An event's data, re-serialised without its strings that quote the key."""
        if not self._key or not _shares_piece(data.decode("utf-8", "replace"), self._key):
            return data
        return orjson.dumps(self._redacted(orjson.loads(data)))

    def _redacted(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.safe(value)
        if isinstance(value, dict):
            return {key: self._redacted(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._redacted(item) for item in value]
        return value

    def safe(self, message: str) -> str:
        """``message``, or a notice in its place when it quotes any piece of the key."""
        if self._key and _shares_piece(message, self._key):
            return "(upstream message withheld: it quoted the provider credentials)"
        return message

    def stream_failure(self, what: str) -> AttemptFailed:
        return AttemptFailed("bad_response", f"provider {self.name} {what}")

    def json_event(self, data: bytes) -> dict[str, Any]:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise self.stream_failure("sent an event that is not JSON") from None
        if not isinstance(event, dict):
            raise self.stream_failure("sent an event that is not an object")
        return event


def header_pair(extra: dict[str, str]) -> tuple[httpx.Headers, httpx.Headers]:
    """The headers of a JSON call and of a streamed call, built once per provider.

    ``Accept-Encoding: identity``: without the header any coding would be
    acceptable (RFC 9110), and a compressed answer could inflate without bound.
    """
    json = {
        "content-type": "application/json",
        "accept": "application/json",
        "accept-encoding": "identity",
        **extra,
    }
    return httpx.Headers(json), httpx.Headers({**json, "accept": "text/event-stream"})


class ResponseStream:
    """An open upstream stream: the events ``produce`` makes of its body, and the body to
    close. Only the body is kept, not the response with its request and headers: an open
    stream holds what it still needs."""

    __slots__ = ("_body", "_closed", "_produce")

    def __init__(
        self,
        body: httpx.AsyncByteStream,
        produce: Callable[[httpx.AsyncByteStream], AsyncIterator[Any]],
    ) -> None:
        self._body = body
        self._produce = produce
        self._closed = False

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._produce(self._body)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._body.aclose()


async def read_all(response: httpx.Response, limit: int = _MAX_ERROR_BYTES) -> bytes:
    """The body up to ``limit`` bytes (what lies beyond is dropped), then the response closed."""
    try:
        return await _collect(response, limit, None)
    finally:
        await response.aclose()


async def _collect(
    response: httpx.Response, limit: int, too_large: Callable[[int], AttemptFailed] | None
) -> bytes:
    """The body up to ``limit`` bytes: past it, ``too_large(limit)`` is raised or, when
    ``None``, what came before the bound is returned. The caller closes the response."""
    pieces: list[bytes] = []
    size = 0
    async for chunk in response.stream:  # type: ignore[union-attr]
        if size + len(chunk) > limit:
            if too_large is not None:
                raise too_large(limit)
            pieces.append(chunk[: limit - size])
            break
        pieces.append(chunk)
        size += len(chunk)
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _unasked_coding(response: httpx.Response) -> str | None:
    """The body's ``Content-Encoding`` unless it is ``identity`` (all the gateway asks for)."""
    coding: str | None = response.headers.get("content-encoding")
    if coding is None or coding.strip().lower() == "identity":
        return None
    return coding


def _declared_length(response: httpx.Response) -> int:
    value = response.headers.get("content-length")
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds or an HTTP date; ``None`` when absent or garbage."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError):
        return True
    if isinstance(exc, httpx.ConnectTimeout):
        # The aiohttp transport reports a dropped connection as ConnectTimeout;
        # only a cause that really is a timeout counts as one.
        cause = exc.__cause__
        return cause is None or isinstance(cause, TimeoutError)
    return isinstance(exc, httpx.TimeoutException)


def _shares_piece(text: str, secret: str) -> bool:
    if len(secret) < _SECRET_PIECE:
        return secret in text
    return any(
        secret[i : i + _SECRET_PIECE] in text for i in range(len(secret) - _SECRET_PIECE + 1)
    )
