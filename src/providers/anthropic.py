"""The Anthropic adapter: the Messages API and its token count, as they are.

``{base_url}/messages`` and ``{base_url}/messages/count_tokens`` with
``x-api-key``. The client's ``anthropic-version`` and ``anthropic-beta``
headers are forwarded unchanged (Anthropic's gateway protocol reference asks
this of a gateway: they switch features on); without them the configured
``anthropic_version`` is sent. Anthropic's statuses mean what OpenAI's do
(400/413 the request, 429 throttling, 5xx and 529 overload), so the shared
failure mapping applies; an ``error`` event in a stream fails the attempt like
a status would.
"""

from __future__ import annotations

import httpx

from .base import Outbound
from .http import DEFAULT_BOUNDS, Bounds, HTTPProvider, header_pair
from .operations import Operation

# The client's headers the Messages API defines, forwarded as they came.
FORWARDED = ("anthropic-version", "anthropic-beta")


class AnthropicProvider(HTTPProvider):
    kind = "anthropic"
    dialect = "anthropic"
    speaks = frozenset({"messages", "count_tokens"})

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
        base = base_url.rstrip("/")
        self._urls = {
            "messages": httpx.URL(base + "/messages"),
            "count_tokens": httpx.URL(base + "/messages/count_tokens"),
        }
        self._own = {"anthropic-version": version}
        if api_key:
            self._own["x-api-key"] = api_key
        self._json_headers, self._sse_headers = header_pair(self._own)
        self.default_max_tokens = default_max_tokens

    def url(self, op: Operation, model: str) -> httpx.URL:
        return self._urls[op.name]

    def headers(self, request: Outbound, stream: bool) -> httpx.Headers:
        forwarded = {name: request.headers[name] for name in FORWARDED if name in request.headers}
        if not forwarded:
            return self._sse_headers if stream else self._json_headers
        json, sse = header_pair({**self._own, **forwarded})
        return sse if stream else json
