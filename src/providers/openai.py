"""The OpenAI-compatible adapter: OpenAI itself, vLLM, Ollama, any ``/chat/completions``.

The body is passed through with ``model`` replaced: OpenAI's shape is the
gateway's own, so there is nothing to translate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from .base import AttemptFailed, Chunk
from .http import DEFAULT_BOUNDS, Bounds, HTTPProvider, ResponseStream, header_pair


class OpenAIProvider(HTTPProvider):
    """Calls ``{base_url}/chat/completions`` and ``{base_url}/embeddings``."""

    kind = "openai"

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
        self._chat_url = httpx.URL(self._base + "/chat/completions")
        self._embeddings_url = httpx.URL(self._base + "/embeddings")
        self._json_headers, self._sse_headers = header_pair(self.auth_headers(api_key))

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"} if api_key else {}

    def chat_url(self, model: str) -> httpx.URL:
        return self._chat_url

    def embeddings_url(self, model: str) -> httpx.URL:
        return self._embeddings_url

    async def complete(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        payload = orjson.dumps({**body, "model": model})
        answer = await self._call_json(self.chat_url(model), self._json_headers, payload)
        choices = answer.get("choices")
        if not isinstance(choices, list) or not all(
            isinstance(choice, dict) and isinstance(choice.get("message"), dict)
            for choice in choices
        ):
            raise AttemptFailed(
                "bad_response",
                f"provider {self.name} answered without a 'choices' list of messages",
            )
        return answer

    async def embed(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        payload = orjson.dumps({**body, "model": model})
        answer = await self._call_json(self.embeddings_url(model), self._json_headers, payload)
        if not isinstance(answer.get("data"), list):
            raise AttemptFailed(
                "bad_response", f"provider {self.name} answered without a 'data' list"
            )
        return answer

    async def open_stream(self, model: str, body: dict[str, Any]) -> ResponseStream:
        options = dict(body.get("stream_options") or {})
        # The gateway counts tokens even when the client did not ask.
        options["include_usage"] = True
        payload = orjson.dumps({**body, "model": model, "stream": True, "stream_options": options})
        response = await self._open(self.chat_url(model), self._sse_headers, payload)
        return ResponseStream(response, self._chunks)

    async def _chunks(self, response: httpx.Response) -> AsyncIterator[Chunk]:
        """OpenAI server-sent events in, chunk dicts out, until ``[DONE]``."""
        async for data in self.sse_data(response):
            if data == b"[DONE]":
                return
            yield self.json_event(data)
        raise self.stream_failure("ended the stream without [DONE]")
