"""The Responses API in, Anthropic Messages upstream: the ``responses_anthropic`` translator.

Two translators composed: ``responses_chat`` carries the request into chat
completions and ``openai_anthropic`` from there into a Messages body; the
answer and the stream come back the same way. What the first refuses names
the Responses API's field (``input.2.type``, ``tools.0.type``); the second
sees only what the first made (messages of text, images and tool calls,
function tools, ``tool_choice``, ``temperature``, ``top_p``, a JSON-schema
format), so its refusals name fields the client knows too (``temperature``
above 1, which Anthropic does not take).
"""

from __future__ import annotations

from typing import Any

from ..providers import Provider
from ..providers.base import Usage
from ..providers.operations import MESSAGES, RESPONSES, Operation
from .base import Context, StreamTranslator
from .openai_anthropic import CHAT_TO_MESSAGES
from .responses_chat import RESPONSES_TO_CHAT


class _Composed:
    """The Responses body through ``responses_chat`` (outer) into ``openai_anthropic`` (inner)."""

    name = "responses_anthropic"
    inbound: Operation = RESPONSES
    outbound: Operation = MESSAGES

    def request(self, body: dict[str, Any], model: str, provider: Provider) -> dict[str, Any]:
        chat = RESPONSES_TO_CHAT.request(body, model, provider)
        return CHAT_TO_MESSAGES.request(chat, model, provider)

    def answer(self, answer: dict[str, Any], usage: Usage, context: Context) -> dict[str, Any]:
        chat = CHAT_TO_MESSAGES.answer(answer, usage, context)
        return RESPONSES_TO_CHAT.answer(chat, usage, context)

    def stream(self, context: Context) -> _ComposedStream:
        return _ComposedStream(CHAT_TO_MESSAGES.stream(context), RESPONSES_TO_CHAT.stream(context))


class _ComposedStream:
    def __init__(self, inner: StreamTranslator, outer: StreamTranslator) -> None:
        self._inner = inner
        self._outer = outer

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        return [out for chunk in self._inner.feed(event) for out in self._outer.feed(chunk)]

    def end(self, usage: Usage) -> list[dict[str, Any]]:
        out = [event for chunk in self._inner.end(usage) for event in self._outer.feed(chunk)]
        return out + self._outer.end(usage)


RESPONSES_TO_MESSAGES = _Composed()
