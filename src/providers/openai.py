"""The OpenAI-compatible adapter: OpenAI itself, vLLM, Ollama, any OpenAI-shaped API.

It takes chat completions, embeddings and the Responses API, each at its own
path under ``base_url`` (an ``openai`` provider is assumed to have
``/responses``: OpenAI does; a server without it answers 404 and the attempt
fails). The bodies pass through with ``model`` replaced.
"""

from __future__ import annotations

import httpx

from .base import Outbound
from .http import HTTPProvider, header_pair
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
    ) -> None:
        super().__init__(name, transport, api_key, timeout_s)
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


_PATHS = {"chat": "/chat/completions", "embeddings": "/embeddings", "responses": "/responses"}
