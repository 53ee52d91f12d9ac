"""Azure OpenAI: the OpenAI adapter with Azure's addressing.

The target's model is the deployment name, which goes in the path
(``/openai/deployments/{deployment}/...``); every call carries the
``api-version`` query parameter and the key in the ``api-key`` header.
The bodies are OpenAI's. The Responses API is not per deployment on Azure:
it is ``/openai/responses``, the deployment named by the body's ``model``.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from .http import DEFAULT_BOUNDS, Bounds
from .openai import OpenAIProvider
from .operations import Operation


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
        # (deployment, operation) -> URL, built on first use: the deployments are the
        # aliases' models.
        self._deployed: dict[tuple[str, str], httpx.URL] = {}
        self._responses = httpx.URL(
            f"{self._base}/openai/responses", params={"api-version": api_version}
        )

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        return {"api-key": api_key} if api_key else {}

    def url(self, op: Operation, model: str) -> httpx.URL:
        if op.name == "responses":
            return self._responses
        url = self._deployed.get((model, op.name))
        if url is None:
            url = httpx.URL(
                f"{self._base}/openai/deployments/{quote(model, safe='')}{op.path}",
                params={"api-version": self._api_version},
            )
            self._deployed[(model, op.name)] = url
        return url
