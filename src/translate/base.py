"""The translator seam: what one translator (inbound -> outbound pair) does."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..providers import Provider
from ..providers.base import Usage
from ..providers.operations import Operation


@dataclass(frozen=True, slots=True)
class Context:
    """What a translation knows of the call: the model the client asked for (answers name
    it), the request's id (ids of answers it makes up), the approximate prompt, the client's
    request (answers that echo its settings), when the answer was made."""

    alias: str
    request_id: str
    prompt_estimate: int = 0
    request: dict[str, Any] | None = None
    created: int = field(default_factory=lambda: int(time.time()))


class StreamTranslator(Protocol):
    """One stream's events from the outbound dialect into the inbound one (as objects)."""

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The client's events for one upstream event (often one, sometimes none)."""
        ...

    def end(self, usage: Usage) -> list[dict[str, Any]]:
        """The client's last events once the upstream completed, with the final usage."""
        ...


class Translator(Protocol):
    name: str
    inbound: Operation
    outbound: Operation

    def request(self, body: dict[str, Any], model: str, provider: Provider) -> dict[str, Any]:
        """The inbound body as the outbound operation's body for ``model``; raises
        ``UnsupportedField`` naming the first field that does not map."""
        ...

    def answer(self, answer: dict[str, Any], usage: Usage, context: Context) -> dict[str, Any]:
        """The upstream's whole answer as the inbound operation's, with ``usage``."""
        ...

    def stream(self, context: Context) -> StreamTranslator: ...


def first_reply(answer: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A ``chat.completion``'s first choice, its message, and the message's text."""
    choices = answer.get("choices") or [{}]
    first = choices[0] if isinstance(choices[0], dict) else {}
    reply = first.get("message") or {}
    text = reply.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    return first, reply, text if isinstance(text, str) else ""


def first_delta(chunk: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A chunk's first choice and its delta; ``None`` for a chunk without choices."""
    choices = chunk.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(first, dict):
        return None
    return first, first.get("delta") or {}
