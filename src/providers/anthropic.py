"""The Anthropic adapter: OpenAI-shaped requests to the Messages API and answers back.

``{base_url}/messages`` with ``x-api-key`` and ``anthropic-version``; the
translation itself lives in ``translate`` (shared with the inbound
``/v1/messages``). Anthropic's statuses mean what OpenAI's do (400/413 the
request, 429 throttling, 5xx and 529 overload), so the shared failure mapping
applies; an ``error`` event in a stream fails the attempt like a status would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from ..errors import UnsupportedField
from ..translate.anthropic_request import to_anthropic
from ..translate.anthropic_response import to_openai_answer
from ..translate.anthropic_stream import ChunksFromEvents, UpstreamErrorEvent
from .base import AttemptFailed, Chunk
from .http import DEFAULT_BOUNDS, Bounds, HTTPProvider, ResponseStream, header_pair

# Anthropic error types of an ``error`` event, as the HTTP status they stand for.
_ERROR_STATUS = {"overloaded_error": 529, "rate_limit_error": 429, "api_error": 500}


class AnthropicProvider(HTTPProvider):
    kind = "anthropic"

    def __init__(
        self,
        name: str,
        transport: httpx.AsyncBaseTransport,
        base_url: str,
        api_key: str | None,
        timeout_s: float,
        *,
        version: str,
        default_max_tokens: int,
        bounds: Bounds = DEFAULT_BOUNDS,
    ) -> None:
        super().__init__(name, transport, api_key, timeout_s, bounds)
        self._url = httpx.URL(base_url.rstrip("/") + "/messages")
        extra = {"anthropic-version": version}
        if api_key:
            extra["x-api-key"] = api_key
        self._json_headers, self._sse_headers = header_pair(extra)
        self._default_max_tokens = default_max_tokens
        self._who = f"provider {name!r} (anthropic)"

    async def complete(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        request = to_anthropic(body, model, self._who, self._default_max_tokens)
        message = await self._call_json(self._url, self._json_headers, orjson.dumps(request))
        if message.get("type") != "message" or not isinstance(message.get("content"), list):
            raise AttemptFailed("bad_response", f"provider {self.name} answered without a message")
        return to_openai_answer(message)

    async def embed(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        raise UnsupportedField(self._who, "model", "Anthropic offers no embeddings API")

    async def open_stream(self, model: str, body: dict[str, Any]) -> ResponseStream:
        request = to_anthropic(body, model, self._who, self._default_max_tokens)
        request["stream"] = True
        response = await self._open(self._url, self._sse_headers, orjson.dumps(request))
        return ResponseStream(response, self._chunks)

    async def _chunks(self, response: httpx.Response) -> AsyncIterator[Chunk]:
        events = ChunksFromEvents()
        async for data in self.sse_data(response):
            try:
                chunks = events.feed(self.json_event(data))
            except UpstreamErrorEvent as exc:
                raise AttemptFailed(
                    "status",
                    f"provider {self.name} sent an error event:"
                    f" {exc.kind}: {self.safe(exc.message)}",
                    status=_ERROR_STATUS.get(exc.kind, 500),
                ) from None
            for chunk in chunks:
                yield chunk
            if events.done:
                return
        raise self.stream_failure("ended the stream without message_stop")
