"""What every HTTP adapter shares: sending over the pooled transport, and mapping failures.

Foreign errors are mapped here, at the seam: httpx and transport exceptions
become ``AttemptFailed``, upstream statuses become ``AttemptFailed`` or
``UpstreamRejected``. No upstream text that echoes the provider key is shown.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson

from ..errors import UpstreamRejected
from .base import AttemptFailed
from .sse import SSEDecoder

# Statuses that mean the request itself is wrong: every target would refuse it.
_REQUEST_FAULTS = frozenset({400, 413, 422})
_SECRET_PIECE = 8


class HTTPProvider:
    """Sends ``httpx.Request``s to the provider's transport itself.

    An ``httpx.AsyncClient`` in between would add cookie, auth, redirect and URL
    merging work that the gateway does not use, on every call.
    """

    stub = False
    kind = "http"

    def __init__(
        self, name: str, transport: httpx.AsyncBaseTransport, api_key: str | None, timeout_s: float
    ) -> None:
        self.name = name
        self._transport = transport
        self._key = api_key
        self._timeout_s = timeout_s
        self._extensions = {"timeout": httpx.Timeout(timeout_s).as_dict()}

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
                content = await _read(response)
        except (TimeoutError, httpx.HTTPError) as exc:
            raise self._transport_failure(exc) from None
        if response.status_code != 200:
            raise self._status_failure(response.status_code, response.headers, content)
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
                    content = await _read(response)
            except (TimeoutError, httpx.HTTPError):
                content = b""
                await response.aclose()
            raise self._status_failure(response.status_code, response.headers, content)
        return response

    def _transport_failure(self, exc: BaseException) -> AttemptFailed:
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

    def _upstream_message(self, content: bytes) -> str:
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
        sending bytes without completing an event (a drip) is cut here, once no
        event has arrived for the provider's timeout. Ends when the upstream
        closes the stream; the caller decides whether that was too early.
        """
        decoder = SSEDecoder()
        clock = asyncio.get_running_loop().time
        last_event = clock()
        try:
            async for raw in response.stream:  # type: ignore[union-attr]
                events = decoder.feed(raw)
                if not events:
                    if clock() - last_event > self._timeout_s:
                        raise TimeoutError
                    continue
                last_event = clock()
                for data in events:
                    yield data
        except (TimeoutError, httpx.HTTPError) as exc:
            raise self._transport_failure(exc) from None

    def json_event(self, data: bytes) -> dict[str, Any]:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise self.stream_failure("sent an event that is not JSON") from None
        if not isinstance(event, dict):
            raise self.stream_failure("sent an event that is not an object")
        return event


def header_pair(extra: dict[str, str]) -> tuple[httpx.Headers, httpx.Headers]:
    """The headers of a JSON call and of a streamed call, built once per provider."""
    json = {"content-type": "application/json", "accept": "application/json", **extra}
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


async def _read(response: httpx.Response) -> bytes:
    """The whole body, then the response closed.

    Iterates the transport's stream directly: the gateway asks for no
    compression it cannot read, so httpx's decoder layers have nothing to do.
    """
    try:
        chunks = [chunk async for chunk in response.stream]  # type: ignore[union-attr]
    finally:
        await response.aclose()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


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
