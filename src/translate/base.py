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
