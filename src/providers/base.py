"""The provider seam: what an adapter does, and how an attempt fails.

An adapter turns an OpenAI-shaped chat (or embeddings) body into one upstream
call and back: OpenAI's shapes are the gateway's lingua franca.
It sends ``httpx.Request``s straight to the pooled httpx transport
(``httpx.AsyncBaseTransport``, ``AiohttpTransport`` in production) made for its
provider at start-up, with no ``httpx.AsyncClient`` in between; ``Providers``
owns the transports and closes them (at shutdown, or when a reload retires
the gateway that used them).

Failures an adapter raises:
- ``AttemptFailed``: this target could not answer (timeout, connection error,
  429, 5xx, an unparseable body, the provider refusing the gateway's key);
  another target may. Its ``message`` is safe to show: never a key.
- ``errors.UpstreamRejected``: the provider refused the request itself (400,
  413, 422); another target would too, so the router stops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

Chunk = dict[str, Any]


class AttemptFailed(Exception):
    """One target failed in a way another target might not.

    ``kind`` is ``timeout``, ``connect``, ``status`` or ``bad_response``;
    ``status`` is the upstream's HTTP status where there was one;
    ``retry_after_s`` is the upstream's ``Retry-After`` when it gave a usable one.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class Usage:
    """Token usage in one shape, whatever the dialect that reported it.

    ``prompt_tokens`` is every input token, cached or not (OpenAI's
    ``prompt_tokens``; Anthropic's ``input_tokens`` plus its cache reads and
    writes); ``cache_read_tokens`` and ``cache_write_tokens`` are the parts of
    it read from and written to the provider's prompt cache.
    ``completion_tokens`` is every output token, ``reasoning_tokens`` included.
    """

    prompt_tokens: int
    completion_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def uncached_prompt_tokens(self) -> int:
        """The input tokens charged at the plain input rate."""
        return max(0, self.prompt_tokens - self.cache_read_tokens - self.cache_write_tokens)

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


class ChunkStream(Protocol):
    """An open upstream stream of OpenAI ``chat.completion.chunk`` dicts.

    Iteration ends after the upstream's ``[DONE]``; an upstream that stops
    without it raises ``AttemptFailed``. ``aclose`` releases the upstream
    connection at once and is safe to call more than once; the caller must
    call it, also when it stops early.
    """

    def __aiter__(self) -> AsyncIterator[Chunk]: ...

    async def aclose(self) -> None: ...


class Provider(Protocol):
    name: str
    stub: bool

    async def complete(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        """One non-streamed chat completion: the upstream's ``chat.completion`` dict.

        ``body`` is the client's body; the adapter sets ``model`` on its own copy.
        Raises ``AttemptFailed`` or ``UpstreamRejected``.
        """
        ...

    async def embed(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        """One embeddings call: the upstream's ``{"object": "list", "data": [...]}`` dict.

        Raises ``AttemptFailed``, ``UpstreamRejected``, or ``UnsupportedField``
        when the provider has no embeddings.
        """
        ...

    async def open_stream(self, model: str, body: dict[str, Any]) -> ChunkStream:
        """Start a streamed completion; returns once the upstream accepted it.

        Raises ``AttemptFailed`` or ``UpstreamRejected`` before returning.
        """
        ...
