"""Azure OpenAI: the OpenAI adapter with Azure's addressing.

The target's model is the deployment name, which goes in the path
(``/openai/deployments/{deployment}/...``); every call carries the
``api-version`` query parameter and the key in the ``api-key`` header.
The bodies are OpenAI's.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from .http import DEFAULT_BOUNDS, Bounds
from .openai import OpenAIProvider


class AzureOpenAIProvider(OpenAIProvider):
    kind = "azure"

    def __init__(
        self,
        name: str,
        transport: httpx.AsyncBaseTransport,
        base_url: str,
        api_key: str | None,
        timeout_s: float,
        api_version: str,
        bounds: Bounds = DEFAULT_BOUNDS,
    ) -> None:
        super().__init__(name, transport, base_url, api_key, timeout_s, bounds)
        self._api_version = api_version
        # deployment -> URL, built on first use: the deployments are the aliases' models.
        self._urls: dict[tuple[str, str], httpx.URL] = {}

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        return {"api-key": api_key} if api_key else {}

    def _url(self, deployment: str, operation: str) -> httpx.URL:
        url = self._urls.get((deployment, operation))
        if url is None:
            url = httpx.URL(
                f"{self._base}/openai/deployments/{quote(deployment, safe='')}/{operation}",
                params={"api-version": self._api_version},
            )
            self._urls[(deployment, operation)] = url
        return url

    def chat_url(self, model: str) -> httpx.URL:
        return self._url(model, "chat/completions")

    def embeddings_url(self, model: str) -> httpx.URL:
        return self._url(model, "embeddings")
