"""The OpenAI-compatible adapter: OpenAI itself, vLLM, Ollama, any OpenAI-shaped API.

It takes chat completions, embeddings and the Responses API, each at its own
path under ``base_url`` (an ``openai`` provider is assumed to have
``/responses``: OpenAI does; a server without it answers 404 and the attempt
fails). The bodies pass through with ``model`` replaced.
"""

from __future__ import annotations

import asyncio

import httpx

from ..errors import UpstreamRejected
from .base import Outbound
from .http import DEFAULT_BOUNDS, Bounds, HTTPProvider, header_pair
from .operations import Operation


class OpenAIProvider(HTTPProvider):
    kind = "openai"
    speaks = frozenset({"chat", "embeddings", "responses"})

    def __init__(
        self,
        name: str,
        transport: httpx.AsyncBaseTransport,
        base_url: str,
        api_key: str | None,
        timeout_s: float,
        bounds: Bounds = DEFAULT_BOUNDS,
    ) -> None:
        super().__init__(name, transport, api_key, timeout_s, bounds)
        self._base = base_url.rstrip("/")
        # Built once, not per request.
        self._urls = {op: httpx.URL(self._base + path) for op, path in _PATHS.items()}
        self._json_headers, self._sse_headers = header_pair(self.auth_headers(api_key))

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"} if api_key else {}

    def url(self, op: Operation, model: str) -> httpx.URL:
        return self._urls[op.name]

    def headers(self, request: Outbound, stream: bool) -> httpx.Headers:
        return self._sse_headers if stream else self._json_headers

    async def stored(self, method: str, path: str, query: bytes) -> bytes:
        """A call about a response the provider stored (``GET /responses/{id}``, ...): the
        200 answer's bytes as sent; ``UpstreamRejected`` (with the provider's error) for a
        4xx, ``AttemptFailed`` otherwise."""
        url = httpx.URL(self._base + path, query=query)
        request = httpx.Request(
            method, url, headers=self._json_headers, extensions=self._extensions
        )
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._transport.handle_async_request(request)
                status = response.status_code
                if status == 200:
                    return await self._read(response)
                content = await self._read_error(response)
        except (TimeoutError, httpx.HTTPError) as exc:
            raise self._transport_failure(exc) from None
        if 400 <= status < 500 and status not in {401, 403, 429}:  # about the response asked for
            detail = self.error_detail(content)
            said = detail.message if detail else f"provider {self.name} answered {status}"
            raise UpstreamRejected(said, status=status, detail=detail)
        raise self._status_failure(status, response.headers, content)


_PATHS = {"chat": "/chat/completions", "embeddings": "/embeddings", "responses": "/responses"}
