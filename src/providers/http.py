"""What every HTTP adapter shares: sending over the pooled transport, and mapping failures.

Foreign errors are mapped here, at the seam: httpx and transport exceptions
become ``AttemptFailed``, upstream statuses become ``AttemptFailed`` or
``UpstreamRejected``. No upstream text that echoes the provider key is shown.

What an answer may cost is bounded here too (``Bounds``, from the provider's
config): a non-streamed answer of at most ``max_response_bytes`` (cut where it
passes, or refused from its ``Content-Length``), an error body of at most
64 KiB (only its message is used), a stream event of at most
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
from ..errors import UpstreamRejected
from .base import AttemptFailed
from .sse import EventTooLarge, SSEDecoder

# Statuses that mean the request itself is wrong: every target would refuse it.
_REQUEST_FAULTS = frozenset({400, 413, 422})
_SECRET_PIECE = 8
# An error answer is read for its message only.
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

    def __init__(
        self,
        name: str,
        transport: httpx.AsyncBaseTransport,
        api_key: str | None,
        timeout_s: float,
        bounds: Bounds = DEFAULT_BOUNDS,
    ) -> None:
        self.name = name
        self._transport = transport
        self._key = api_key
        self._timeout_s = timeout_s
        self._bounds = bounds
        # The wait for a free connection is part of the attempt: never longer than it.
        self._pool_timeout_s = min(bounds.pool_timeout_s, timeout_s)
        timeout = httpx.Timeout(timeout_s, pool=self._pool_timeout_s)
        self._extensions = {"timeout": timeout.as_dict()}

    def _request(self, url: httpx.URL, headers: httpx.Headers, payload: bytes) -> httpx.Request:
        return httpx.Request(
            "POST", url, headers=headers, content=payload, extensions=self._extensions
        )

    async def _call_json(
        self, url: httpx.URL, headers: httpx.Headers, payload: bytes
    ) -> dict[str, Any]:
        """POST and return the decoded 200 answer (an object); failures mapped."""
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._transport.handle_async_request(
                    self._request(url, headers, payload)
                )
                if response.status_code != 200:
                    content = await self._read_error(response)
                    raise self._status_failure(response.status_code, response.headers, content)
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
        return answer

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

    async def _read(self, response: httpx.Response) -> bytes | bytearray:
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

    async def _read_error(self, response: httpx.Response) -> bytes | bytearray:
        """The start of an error answer (its message is all the gateway uses); response closed."""
        try:
            if _unasked_coding(response) is not None:
                return b""  # not readable without inflating it: no message, then
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
        self, status: int, headers: httpx.Headers, content: bytes | bytearray
    ) -> AttemptFailed | UpstreamRejected:
        detail = self._upstream_message(content)
        if status in _REQUEST_FAULTS:
            return UpstreamRejected(
                f"provider {self.name} refused the request ({status}){detail}", status=status
            )
        return AttemptFailed(
            "status",
            f"provider {self.name} answered {status}{detail}",
            status=status,
            retry_after_s=parse_retry_after(headers.get("retry-after")),
        )

    def _upstream_message(self, content: bytes | bytearray) -> str:
        """The upstream's own error message, unless it echoes any piece of the key."""
        try:
            error = orjson.loads(content).get("error")
            message = error.get("message") if isinstance(error, dict) else None
        except (orjson.JSONDecodeError, AttributeError):
            return ""
        if not isinstance(message, str) or not message:
            return ""
        return f": {self.safe(message)[:500]}"

    def safe(self, message: str) -> str:
        """``message``, or a notice in its place when it quotes any piece of the key."""
        if self._key and _shares_piece(message, self._key):
            return "(upstream message withheld: it quoted the provider credentials)"
        return message

    def stream_failure(self, what: str) -> AttemptFailed:
        return AttemptFailed("bad_response", f"provider {self.name} {what}")

    async def sse_data(self, response: httpx.Response) -> AsyncIterator[bytes]:
        """The ``data`` of each event of a server-sent-event stream.

        A silent upstream is cut by the transport's read timeout. One that keeps
        sending bytes without completing an event (a drip) is cut here, once it
        has been waited for the provider's timeout since its last event: only
        the time spent waiting for the upstream counts, not the time the
        consumer took (a client reading slowly is not the upstream's fault). An
        event larger than ``max_event_bytes`` fails the stream. Ends when the
        upstream closes the stream; the caller decides whether that was too early.
        """
        limit = self._bounds.max_event_bytes
        decoder = SSEDecoder(limit)
        clock = asyncio.get_running_loop().time
        chunks = aiter(response.stream)  # type: ignore[arg-type]
        waited = 0.0
        try:
            while True:
                started = clock()
                raw = await anext(chunks, None)
                if raw is None:
                    return
                waited += clock() - started
                events = decoder.feed(raw)
                if not events:
                    if waited > self._timeout_s:
                        raise TimeoutError
                    continue
                waited = 0.0
                for data in events:
                    yield data
        except (TimeoutError, httpx.HTTPError) as exc:
            raise self._transport_failure(exc) from None
        except EventTooLarge:
            raise self.stream_failure(
                f"sent an event larger than {limit} bytes (max_event_bytes)"
            ) from None

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
    """An open upstream stream: chunks from ``produce``, and the response to close."""

    def __init__(
        self, response: httpx.Response, produce: Callable[[httpx.Response], AsyncIterator[Any]]
    ) -> None:
        self._response = response
        self._produce = produce

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._produce(self._response)

    async def aclose(self) -> None:
        await self._response.aclose()


async def _collect(
    response: httpx.Response, limit: int, too_large: Callable[[int], AttemptFailed] | None
) -> bytes | bytearray:
    """The body up to ``limit`` bytes: past it, ``too_large(limit)`` is raised or, when
    ``None``, what came before the bound is returned. The caller closes the response."""
    body: bytes | bytearray = b""
    async for chunk in response.stream:  # type: ignore[union-attr]
        if len(body) + len(chunk) > limit:
            if too_large is not None:
                raise too_large(limit)
            return body + chunk[: limit - len(body)]
        if not body:
            body = chunk  # most answers come in one piece: no copy
        else:
            if isinstance(body, bytes):
                body = bytearray(body)
            body += chunk
    return body


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
